//! tfe-run's own messages on stderr: errors, warnings and information lines.
//! `--color` (with NO_COLOR and whether stderr is a terminal, through anstream)
//! decides their style; `--quiet` silences the information lines and progress
//! bars, never an error or a warning.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};

use anstyle::{AnsiColor, Style};

static QUIET: AtomicBool = AtomicBool::new(false);

const ERROR: Style = Style::new().bold().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));
const WARNING: Style = Style::new().bold().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));

/// Apply `--quiet` and `--color` for the rest of the process (clap's own
/// messages follow the same color choice: it reads anstream's global one).
pub fn set(quiet: bool, color: clap::ColorChoice) {
    QUIET.store(quiet, Ordering::Relaxed);
    set_color(color);
}

pub fn set_color(color: clap::ColorChoice) {
    let choice = match color {
        clap::ColorChoice::Auto => anstream::ColorChoice::Auto,
        clap::ColorChoice::Always => anstream::ColorChoice::Always,
        clap::ColorChoice::Never => anstream::ColorChoice::Never,
    };
    choice.write_global();
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

pub fn error(message: impl Display) {
    anstream::eprintln!("{ERROR}error:{ERROR:#} {message}");
}

pub fn warning(message: impl Display) {
    anstream::eprintln!("{WARNING}warning:{WARNING:#} {message}");
}

/// A line that says what was done (`deployed ...`, `wrote ...`); not under `--quiet`.
pub fn info(message: impl Display) {
    if !quiet() {
        anstream::eprintln!("{message}");
    }
}
