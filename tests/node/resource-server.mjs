// A payment backend validating an access token as an RFC 9068 resource server with
// oauth4webapi: RFC 8414 discovery from the issuer, then validateJwtAccessToken (typ at+jwt,
// iss, aud, exp, sub, jti, client_id, signature against the discovered JWKS).
// Usage: node resource-server.mjs '{"issuer": ..., "audience": ..., "token": ...}'
// Prints one JSON line: {"ok": true, "claims": {...}} or {"ok": false, "error": {...}}.
import * as oauth from 'oauth4webapi'

const args = JSON.parse(process.argv[2])
const insecure = { [oauth.allowInsecureRequests]: true } // the test server is plain HTTP on 127.0.0.1
try {
  const issuer = new URL(args.issuer)
  const as = await oauth.processDiscoveryResponse(
    issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }))
  const request = new Request('https://payments.example/charge', {
    headers: { authorization: `Bearer ${args.token}` },
  })
  const claims = await oauth.validateJwtAccessToken(as, request, args.audience, insecure)
  console.log(JSON.stringify({ ok: true, claims }))
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: { name: err.name, code: err.code, message: err.message } }))
}
