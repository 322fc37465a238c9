// Issue: client-credentials grants, spread over the target's nodes.
import { issue, node, openModel } from './lib.js';

export { handleSummary } from './lib.js';
export const options = openModel(500, ['issue']);

export default function () {
  issue(node(__ITER));
}
