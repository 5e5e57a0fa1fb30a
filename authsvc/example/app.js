// The example payment front end: every step is one or two calls to the authsvc API.
// Dev only: codes are read from /example/dev/outbox, and /example/dev/redeem stands in for
// the payment backend (which holds client credentials and must never run in a browser).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { registrationId: null, enrollmentToken: null, accessToken: null };
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

// A step-up for `action` (and the payment it covers), answered with the passkey or a TOTP code.
async function stepUp(action, transaction, totpCode) {
  const challenge = await api("POST", "/v1/step-up", { action, ...(transaction ? { transaction } : {}) },
    bearer(state.accessToken));
  const answer = totpCode
    ? { method: "totp", code: totpCode }
    : { method: "webauthn", credential: await getAssertion(challenge.webauthn_options) };
  return api("POST", `/v1/step-up/${challenge.challenge_id}/verify`, answer, bearer(state.accessToken));
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
    const { options } = await api("POST", "/v1/factors/webauthn/options", { passkey: true },
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
