// The example payment front end: every step is one or two calls to the authsvc API.
// Dev only: codes are read from /example/dev/outbox, and /example/dev/redeem stands in for
// the payment backend (which holds client credentials and must never run in a browser).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { registrationId: null, enrollmentToken: null, accessToken: null };
// The device token is kept in localStorage, the access and refresh tokens only in memory. Fine
// for this example (README, "Example payment front end"): the page's CSP runs no script but its
// own, and the token alone opens nothing. A real web front end keeps it in an HttpOnly cookie of
// its own backend, which adds X-Device-Token when it calls authsvc.
const DEVICE_TOKEN_KEY = "authsvc-example.device_token";

// ---------------------------------------------------------------- one API call
async function api(method, path, body, headers = {}) {
  const deviceToken = localStorage.getItem(DEVICE_TOKEN_KEY);
  if (deviceToken) headers["X-Device-Token"] = deviceToken; // marks this browser as a known device
  const resp = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  const entry = document.createElement("li");
  entry.textContent = `${method} ${path} -> ${resp.status}`;
  $("log").append(entry);
  if (data && data.device_token) localStorage.setItem(DEVICE_TOKEN_KEY, data.device_token);
  if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${data ? data.code + ": " + data.detail : ""}`);
  return data;
}

const bearer = (token, stepUp) => ({
  Authorization: `Bearer ${token}`,
  ...(stepUp ? { "X-Step-Up-Token": stepUp } : {}),
});

// ---------------------------------------------------------------- WebAuthn (JSON in, JSON out)
async function createCredential(options) {
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
  return (await navigator.credentials.create({ publicKey })).toJSON();
}

async function getAssertion(options) {
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
  return (await navigator.credentials.get({ publicKey })).toJSON();
}

// ---------------------------------------------------------------- Secure Payment Confirmation
// Where the browser offers SPC, the passkey is enrolled as a payment credential and payments are
// confirmed in the browser's own sheet, which shows the payee and the amount; elsewhere the page
// falls back to a plain WebAuthn assertion (bound to the same transaction by its challenge).
async function spcAvailable() {
  if (typeof PaymentRequest === "undefined") return false;
  if (PaymentRequest.securePaymentConfirmationAvailability) {
    return (await PaymentRequest.securePaymentConfirmationAvailability()) === "available";
  }
  return false;
}

async function confirmWithSpc(spc) {
  const b64 = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  const request = new PaymentRequest([{
    supportedMethods: "secure-payment-confirmation",
    data: {
      credentialIds: spc.credentialIds.map(b64), challenge: b64(spc.challenge), rpId: spc.rpId,
      payeeName: spc.payeeName, instrument: spc.instrument, timeout: spc.timeout,
    },
  }], { total: { label: "Total", amount: spc.total } });
  const response = await request.show();
  await response.complete("success");
  return response.details.toJSON(); // a PublicKeyCredential whose client data is "payment.get"
}

// A step-up for `action` (and the payment it covers), answered with SPC, the passkey or a TOTP
// code. An exempted payment (the operator's exemptions) gets its token at once.
async function stepUp(action, transaction, totpCode) {
  const challenge = await api("POST", "/v1/step-up", { action, ...(transaction ? { transaction } : {}) },
    bearer(state.accessToken));
  if (challenge.exempt) return { ...challenge, how: `exempt (${challenge.exempt})` };
  let answer;
  if (totpCode) {
    answer = { method: "totp", code: totpCode };
  } else if (challenge.spc && await spcAvailable()) {
    answer = { method: "spc", credential: await confirmWithSpc(challenge.spc) };
  } else {
    answer = { method: "webauthn", credential: await getAssertion(challenge.webauthn_options) };
  }
  const proof = await api("POST", `/v1/step-up/${challenge.challenge_id}/verify`, answer, bearer(state.accessToken));
  return { ...proof, how: answer.method };
}

function done(sectionId) { $(sectionId).classList.add("done"); }

// ---------------------------------------------------------------- the steps
const steps = {
  async register() {
    const started = await api("POST", "/v1/registrations", {
      email: $("email").value, phone: $("phone").value, password: $("password").value, locale: $("locale").value,
    });
    state.registrationId = started.registration_id;
    done("s-register");
  },

  async peek() { // dev only: the codes a real user would read on their phone and in their mail
    const messages = await api("GET", "/example/dev/outbox");
    const codeFor = (to) => {
      const m = messages.find((msg) => msg.to.toLowerCase() === to.toLowerCase());
      const match = m && m.body.match(/(?<![0-9])[0-9]{6}(?![0-9])/); // the contract: first 6-digit run
      return match ? match[0] : "";
    };
    $("phone-code").value = codeFor($("phone").value);
    $("email-code").value = codeFor($("email").value);
  },

  async verify() {
    const verified = await api("POST", `/v1/registrations/${state.registrationId}/verify`, {
      phone_code: $("phone-code").value, email_code: $("email-code").value,
    });
    state.enrollmentToken = verified.enrollment_token;
    done("s-verify");
  },

  async addPasskey() { // the first factor: the enrollment token allows exactly this
    // passkey: a discoverable credential with user verification (it can also sign in alone,
    // POST /v1/login/passkey); without it, a plain security key
    // payment: also a payment credential (WebAuthn "payment" extension) where the browser offers
    // Secure Payment Confirmation
    const payment = await spcAvailable();
    const { options } = await api("POST", "/v1/factors/webauthn/options", { passkey: true, payment },
      bearer(state.enrollmentToken));
    const added = await api("POST", "/v1/factors/webauthn",
      { credential: await createCredential(options), name: "This browser" }, bearer(state.enrollmentToken));
    $("recovery-codes").replaceChildren(...added.recovery_codes.map((code) => {
      const li = document.createElement("li");
      li.textContent = code;
      return li;
    }));
    $("recovery").hidden = false;
    done("s-passkey");
  },

  async login() {
    const challenge = await api("POST", "/v1/login", { email: $("email").value, password: $("password").value });
    const tokens = await api("POST", "/v1/login/mfa", {
      mfa_token: challenge.mfa_token, method: "webauthn",
      credential: await getAssertion(challenge.webauthn_options),
    });
    state.accessToken = tokens.access_token;
    $("device-state").textContent = localStorage.getItem(DEVICE_TOKEN_KEY)
      ? "This browser keeps a device token: it is a known device from now on." : "";
    $("signed-in").hidden = false;
    done("s-login");
  },

  async totpBegin() { // a second factor needs a step-up, answered with the passkey
    const proof = await stepUp("factor.add");
    const begun = await api("POST", "/v1/factors/totp", { name: "Authenticator app" },
      bearer(state.accessToken, proof.step_up_token));
    state.totpFactorId = begun.factor_id;
    $("totp-secret").textContent = begun.secret;
    $("totp-uri").textContent = begun.otpauth_uri;
    $("totp-box").hidden = false;
  },

  async totpConfirm() {
    await api("POST", `/v1/factors/totp/${state.totpFactorId}/confirm`, { code: $("totp-code").value },
      bearer(state.accessToken));
    $("totp-done").hidden = false;
    done("s-totp");
  },

  async pay(withCode) {
    const transaction = { amount: $("amount").value, currency: $("currency").value.toUpperCase(), payee: $("payee").value };
    const proof = await stepUp("payment.authorize", transaction, withCode ? $("pay-code").value : null);
    // The front end hands the step-up token to its payment backend, which redeems it (once) with
    // its client credentials and checks that amount, currency and payee are what it will charge.
    const redeemed = await api("POST", "/example/dev/redeem",
      { step_up_token: proof.step_up_token, action: "payment.authorize", transaction });
    const amount = new Intl.NumberFormat(undefined, { style: "currency", currency: transaction.currency })
      .format(Number(transaction.amount));
    $("receipt-title").textContent = `Payment confirmed: ${amount} to ${transaction.payee}`;
    $("pay-method").textContent = {
      spc: "Confirmed in the browser's payment sheet (Secure Payment Confirmation), which showed payee and amount.",
      webauthn: "Confirmed with the passkey (WebAuthn).",
      totp: "Confirmed with a TOTP code.",
    }[proof.how] || `No factor asked: ${proof.how}.`;
    $("pay-method").dataset.method = proof.how;
    $("redeemed").textContent = JSON.stringify(redeemed, null, 2);
    $("receipt").hidden = false;
    done("s-pay");
  },
};

function wire(buttonId, action) {
  $(buttonId).addEventListener("click", async () => {
    $("error").hidden = true;
    try {
      await action();
    } catch (err) {
      $("error").textContent = err.message;
      $("error").hidden = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("email").value = `hanako+${Date.now() % 100000}@example.com`;
  wire("register", steps.register);
  wire("peek", steps.peek);
  wire("verify", steps.verify);
  wire("add-passkey", steps.addPasskey);
  wire("login", steps.login);
  wire("totp-begin", steps.totpBegin);
  wire("totp-confirm", steps.totpConfirm);
  wire("pay-passkey", () => steps.pay(false));
  wire("pay-totp", () => steps.pay(true));
});
