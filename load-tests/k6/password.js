// Password grant, then the refresh token used once on another node (rotation: the new
// refresh token comes back).
import { node, openModel, password, refresh, wrongAnswers } from './lib.js';

export { handleSummary } from './lib.js';
export const options = openModel(40, ['password', 'refresh']);

export default function () {
  const login = password(node(__ITER));
  if (!login) return;
  const renewed = refresh(node(__ITER + 1), login.refresh_token);
  if (renewed && renewed.refresh_token === login.refresh_token) wrongAnswers.add(1);
}
