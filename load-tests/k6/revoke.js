// Revoke: issue on one node, revoke there strictly (`consistency=applied`: it answers once
// every node rejects the token), then check on the other node that it is rejected.
import { issue, node, openModel, revoke, validate } from './lib.js';

export { handleSummary } from './lib.js';
export const options = openModel(100, ['issue', 'revoke', 'validate_revoked']);

export default function () {
  const token = issue(node(__ITER));
  if (!token) return;
  if (revoke(node(__ITER), token, true) === 200) validate(node(__ITER + 1), token, true);
}
