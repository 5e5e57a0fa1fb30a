// Introspects a token with openid-client v6 exactly as its documentation shows, with HTTP Basic
// client authentication (ClientSecretBasic: RFC 6749 2.3.1, id and secret form-urlencoded).
// Usage: node introspect.mjs '{"issuer": ..., "introspection_endpoint": ..., "client_id": ...,
//                              "client_secret": ..., "token": ...}'
// Prints one JSON line: {"ok": true, "result": {...}} or {"ok": false, "error": {...}}.
import * as client from 'openid-client'

const args = JSON.parse(process.argv[2])
try {
  const server = { issuer: args.issuer, introspection_endpoint: args.introspection_endpoint }
  const config = new client.Configuration(server, args.client_id, undefined,
                                          client.ClientSecretBasic(args.client_secret))
  client.allowInsecureRequests(config) // the test server is plain HTTP on 127.0.0.1
  const result = await client.tokenIntrospection(config, args.token)
  console.log(JSON.stringify({ ok: true, result }))
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: { name: err.name, code: err.code, message: err.message,
                                                   status: err.status, cause: err.cause } }))
}
