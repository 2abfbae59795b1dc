//! `mock-server`: run the in-process pygw look-alike for `--duration` seconds.

use std::time::Duration;

use serde_json::json;

use crate::cli::Opts;
use crate::mock::{MockConfig, MockServer};
use crate::report::{emit, Table};

pub fn run(o: &Opts) -> Result<i32, String> {
    let cfg = MockConfig {
        ping_interval: (o.ping_interval > 0.0).then(|| Duration::from_secs_f64(o.ping_interval)),
        pong_timeout: Duration::from_secs_f64(o.pong_timeout.max(0.001)),
        fragment: o.fragment,
        api_key: o.api_key.clone(),
    };
    let mut srv =
        MockServer::start(&o.listen, cfg).map_err(|e| format!("listen {}: {e}", o.listen))?;
    if !o.quiet {
        eprintln!("mock-server listening on {} for {}s", srv.addr, o.duration);
    }
    crate::runner::sleep_with(Duration::from_secs_f64(o.duration), || {});
    srv.stop();
    let stats = srv.stats.to_json();
    let mut t = Table::default();
    t.row("stats", stats.to_string());
    emit(
        o,
        json!({"mode": "mock-server", "addr": srv.addr.to_string(), "stats": stats}),
        &t,
    )
    .map_err(|e| e.to_string())?;
    Ok(0)
}
