// Smoke: VUS (50) VUs for DURATION (10s), each holding pygw WebSocket sessions of SESSION_S
// (4.5 s) with one message every INTERVAL_MS (500 ms); see lib.js. Against any gateway:
//   k6 run -e BASE_URL=http://127.0.0.1:8000 k6/smoke.js
// setup() creates its accounts there (or reads them: -e CREDS=creds.json). `make test` runs it
// through benches/k6_run.py, which starts a gateway; `python -m benches k6_run --target URL`
// drives one that runs already.
import { createAccounts, session, thresholds } from './lib.js';

const VUS = Number(__ENV.VUS || 50);

export const options = {
  scenarios: {
    smoke: {
      executor: 'constant-vus',
      vus: VUS,
      duration: __ENV.DURATION || '10s',
      gracefulStop: '5s',
    },
  },
  thresholds,
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  return createAccounts(VUS);
}

export default function (data) {
  session(data, { sessionS: 4.5, intervalMs: 500 });
}
