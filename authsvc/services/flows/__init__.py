"""Entry-point flows: what a request or command asks for (sign-in, registration, password reset and
change, step-up, passkeys, contact change, managing factors, reports, operators' commands)."""
