// Introspection (RFC 7662) of tokens issued on another node.
import { introspect, node, openModel, tokenPool, wrongAnswers } from './lib.js';

export { handleSummary } from './lib.js';
export const options = openModel(1000, ['introspect']);

export function setup() {
  return tokenPool(Number(__ENV.POOL || 200), false);
}

export default function (pool) {
  if (introspect(node(__ITER + 1), pool.live[__ITER % pool.live.length]) === false) {
    wrongAnswers.add(1);
  }
}
