// Introspects a token with openid-client v6 as its documentation shows: discovery from the
// issuer (RFC 8414, algorithm "oauth2"), HTTP Basic client authentication (ClientSecretBasic:
// RFC 6749 2.3.1, id and secret form-urlencoded before Base64), tokenIntrospection.
// Usage: node introspect.mjs '{"issuer": ..., "client_id": ..., "client_secret": ..., "token": ...}'
// Prints one JSON line: {"ok": true, "result": {...}, "metadata": {...}} or {"ok": false, "error": {...}}.
import * as client from 'openid-client'

const args = JSON.parse(process.argv[2])
try {
  const config = await client.discovery(new URL(args.issuer), args.client_id, undefined,
                                        client.ClientSecretBasic(args.client_secret),
                                        { algorithm: 'oauth2', execute: [client.allowInsecureRequests] })
  const result = await client.tokenIntrospection(config, args.token)
  console.log(JSON.stringify({ ok: true, result, metadata: config.serverMetadata() }))
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: { name: err.name, code: err.code, message: err.message,
                                                   status: err.status, cause: err.cause } }))
}
