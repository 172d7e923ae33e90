//! The reference for `scripts/bench-edge.sh`'s whole-process comparison: the
//! small program anyone would write to parse a log file with
//! `syslog_loose` (read it line by line, parse each line), against which
//! `opmas-edge replay FILE --json` is timed as a whole process.
//!
//! ```text
//! bare_parser FILE
//! ```

use std::io::BufRead;

fn main() -> std::io::Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: bare_parser FILE");
        std::process::exit(2);
    };
    let mut input = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut line = String::new();
    let (mut lines, mut named) = (0u64, 0u64);
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        let m = syslog_loose::parse_message(line.trim_end(), syslog_loose::Variant::Either);
        lines += 1;
        named += u64::from(m.appname.is_some());
    }
    println!("{lines} lines, {named} with a program name");
    Ok(())
}
