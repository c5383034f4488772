// JWTs for tests, signed with node:crypto so the tests do not trust any JWT library the
// gateway might share. Includes the hostile variants docs/protocol.md
// (section "Namespaces and events", authentication) says to reject.
import { createHmac, generateKeyPairSync, randomBytes, sign as cryptoSign } from 'node:crypto';

const b64url = (input) => Buffer.from(input).toString('base64url');

/** A random HS256 secret for one gateway process. */
export function randomSecret() {
  return randomBytes(32).toString('hex');
}

const HMAC_ALGS = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };

/** Claims with a fresh `iat` and an `exp` one hour ahead unless given. */
export function claims(extra = {}) {
  const now = Math.floor(Date.now() / 1000);
  return { iat: now, exp: now + 3600, ...extra };
}

/** Signs `payload` with an HMAC algorithm (HS256 unless `alg` says otherwise). */
export function signHmac(payload, secret, { alg = 'HS256', header = {} } = {}) {
  const head = b64url(JSON.stringify({ alg, typ: 'JWT', ...header }));
  const body = b64url(JSON.stringify(payload));
  const mac = createHmac(HMAC_ALGS[alg], secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${mac}`;
}

/** A valid HS256 token for a user. */
export function userToken(secret, { userId, username, role, ...rest } = {}) {
  const payload = claims({ ...rest });
  if (userId !== undefined) payload.userId = userId;
  if (username !== undefined) payload.username = username;
  if (role !== undefined) payload.role = role;
  return signHmac(payload, secret);
}

/** `alg: none`, empty signature: must be rejected. */
export function unsignedToken(payload) {
  const head = b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }));
  return `${head}.${b64url(JSON.stringify(payload))}.`;
}

/** Correct structure, signature made with another secret. */
export function badSignatureToken(payload) {
  return signHmac(payload, `not-the-secret-${randomSecret()}`);
}

/** Token signed with the right secret but HS512 (not the configured HS256). */
export function wrongHmacAlgorithmToken(payload, secret) {
  return signHmac(payload, secret, { alg: 'HS512' });
}

/** Token signed RS256 with a fresh RSA key (an algorithm the gateway is not configured for). */
export function rs256Token(payload) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const head = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(payload));
  const sig = cryptoSign('sha256', Buffer.from(`${head}.${body}`), privateKey).toString('base64url');
  return `${head}.${body}.${sig}`;
}

/** Correctly signed, but expired ten minutes ago (beyond any usual leeway of 60 s). */
export function expiredToken(payload, secret) {
  const now = Math.floor(Date.now() / 1000);
  return signHmac({ ...payload, iat: now - 7200, exp: now - 600 }, secret);
}

/**
 * An asymmetric key pair for RS256 or ES256, with a signer producing JOSE signatures
 * (ES256: raw r||s, not DER).
 */
export function asymmetricKey(alg) {
  const { privateKey, publicKey } =
    alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' });
  const sign = (payload, { headerAlg = alg } = {}) => {
    const head = b64url(JSON.stringify({ alg: headerAlg, typ: 'JWT' }));
    const body = b64url(JSON.stringify(payload));
    const opts = alg === 'ES256' ? { key: privateKey, dsaEncoding: 'ieee-p1363' } : privateKey;
    const sig = cryptoSign('sha256', Buffer.from(`${head}.${body}`), opts).toString('base64url');
    return `${head}.${body}.${sig}`;
  };
  return { publicPem, sign };
}
