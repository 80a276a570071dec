//! The `tollgate` binary: parses arguments and hands over to the CLI.

use clap::Parser;
use tollgate::cli::{self, args::Cli};

fn main() {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Err(e) = cli::run(cli, &mut out) {
        if !e.message.is_empty() {
            eprintln!("error: {}", e.message);
        }
        std::process::exit(e.code);
    }
}
