// A day's mix: 80% validations (a tenth of them with revoked tokens, which must be refused),
// 15% issues, 5% strict revocations; every wrong answer is counted and fails the run.
import { issue, node, openModel, revoke, tokenPool, validate } from './lib.js';

export { handleSummary } from './lib.js';
export const options = openModel(1000, ['validate', 'validate_revoked', 'issue', 'revoke']);

export function setup() {
  return tokenPool(Number(__ENV.POOL || 100), true);
}

export default function (pool) {
  const roll = Math.random();
  const at = node(__ITER);
  if (roll < 0.08) {
    validate(at, pool.dead[__ITER % pool.dead.length], true);
  } else if (roll < 0.8) {
    validate(at, pool.live[__ITER % pool.live.length], false);
  } else if (roll < 0.95) {
    issue(at);
  } else {
    const token = issue(at);
    if (token) revoke(at, token, true);
  }
}
