use pygw_loadgen::cli::{self, CliError, Mode};
use pygw_loadgen::{clock, modes, sys};

fn main() {
    clock::epoch();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match cli::parse(&args) {
        Ok(o) => o,
        Err(CliError::Help(h)) => {
            print!("{h}");
            return;
        }
        Err(CliError::Usage(m)) => {
            eprintln!("pygw-loadgen: {m}");
            std::process::exit(2);
        }
    };
    let limit = sys::raise_nofile();
    let need = match opts.mode {
        Mode::WsRtt | Mode::Hold | Mode::Http => opts.conns + 32,
        Mode::Fanout => opts.subscribers + opts.window + 33,
        _ => 0,
    } as u64;
    if need > limit {
        eprintln!(
            "pygw-loadgen: warning: RLIMIT_NOFILE is {limit} but this run needs about {need} descriptors"
        );
    }
    let r = match opts.mode {
        Mode::WsRtt => modes::rtt::run(&opts),
        Mode::Fanout => modes::fanout::run(&opts),
        Mode::Hold => modes::hold::run(&opts),
        Mode::Http => modes::http::run(&opts),
        Mode::BenchParse => modes::bench::run(&opts),
        Mode::MockServer => modes::mock_server::run(&opts),
    };
    match r {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("pygw-loadgen: {e}");
            std::process::exit(1);
        }
    }
}
