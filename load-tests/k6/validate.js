// Validate: the protected resource (`GET /api/data`, signature and revocation check) with
// tokens issued on another node than the one checking them.
import { node, openModel, tokenPool, validate } from './lib.js';

export { handleSummary } from './lib.js';
export const options = openModel(1000, ['validate']);

export function setup() {
  return tokenPool(Number(__ENV.POOL || 200), false);
}

export default function (pool) {
  validate(node(__ITER + 1), pool.live[__ITER % pool.live.length], false);
}
