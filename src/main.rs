//! `harmony` command line: run the proxy, or only check a configuration.

use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of glibc malloc: a proxied request makes ~20 small
/// allocations, which cost ~5,000 instructions in glibc (callgrind) and a
/// fraction of that here. See benches/README.md and `harmony::allocator`.
#[global_allocator]
static GLOBAL: harmony::allocator::MiMalloc = harmony::allocator::MiMalloc;

const USAGE: &str = "\
usage: harmony [-c FILE | FILE] [--check]

  -c, --config FILE   configuration file (default: config/harmony.toml)
      --check         validate the configuration (and every pipeline file)
                      and exit: 0 if valid, 1 with every error otherwise
  -V, --version       print the version
  -h, --help          print this help

Signals: SIGTERM/SIGINT drain in-flight requests, then exit.";

struct Args {
    config: PathBuf,
    check: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args { config: PathBuf::from("config/harmony.toml"), check: false };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" => args.config = it.next().ok_or("-c needs a file")?.into(),
            s if s.starts_with("--config=") => args.config = s["--config=".len()..].into(),
            "--check" => args.check = true,
            "-V" | "--version" => {
                println!("harmony {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other if !other.starts_with('-') => args.config = other.into(),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("harmony: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let read_at = std::time::SystemTime::now();
    let cfg = match harmony::config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("{e}");
            }
            eprintln!("harmony: {} configuration error(s) in {}", errors.len(), args.config.display());
            return ExitCode::from(1);
        }
    };
    let gen = match harmony::pipeline::Generation::build(&cfg, 1) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Err(errors) = harmony::runtime::check_lua(&gen) {
        for e in &errors {
            eprintln!("{e}");
        }
        eprintln!("harmony: {} script error(s)", errors.len());
        return ExitCode::from(1);
    }
    if args.check {
        println!(
            "configuration OK: {} ({} file(s), {} pipeline(s))",
            cfg.main_file.display(),
            cfg.files.len(),
            cfg.pipelines.len()
        );
        return ExitCode::SUCCESS;
    }
    let level = harmony::logging::parse_level(&cfg.proxy.log_level).unwrap_or(log::LevelFilter::Info);
    if let Err(e) = harmony::logging::init(level, cfg.logging.json, cfg.logging.file.as_deref()) {
        eprintln!("harmony: cannot open log file: {e}");
        return ExitCode::from(1);
    }
    log::info!("configuration loaded from {} ({} pipeline(s))", cfg.main_file.display(), cfg.pipelines.len());
    match harmony::runtime::run(gen, &args.config, read_at) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            harmony::logging::flush_thread();
            eprintln!("harmony: {e}");
            ExitCode::from(1)
        }
    }
}
