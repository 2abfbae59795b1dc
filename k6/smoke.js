// Smoke: about 50 VUs for 10 s, each holding one pygw WebSocket session (see lib.js).
//   k6 run -e CREDS=creds.json -e WS_BASE=ws://127.0.0.1:8000 k6/smoke.js
// `make test` runs it through benches/k6_run.py (starts a gateway, creates the accounts).
import { session, thresholds } from './lib.js';

export const options = {
  scenarios: {
    smoke: { executor: 'constant-vus', vus: Number(__ENV.VUS || 50), duration: '10s', gracefulStop: '5s' },
  },
  thresholds,
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export default function () {
  session();
}
