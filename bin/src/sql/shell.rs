//! The interactive shell of `ballista sql`.

use std::io::IsTerminal;
use std::process::ExitCode;

use datafusion::prelude::SessionContext;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::{SqlRunOptions, run_sql};

const HELP: &str =
    "Enter SQL statements ending with ';'. Commands: \\q (quit), \\d (list tables), \\? (help).";

/// Reads statements until end of input; each is run as soon as its `;` is
/// typed. Errors are printed and the shell goes on.
pub async fn run(ctx: &SessionContext, options: &SqlRunOptions) -> ExitCode {
    let interactive = std::io::stdin().is_terminal();
    let mut editor = match DefaultEditor::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("Error: cannot start the line editor: {e}");
            return ExitCode::from(1);
        }
    };
    if interactive {
        eprintln!("Ballista SQL shell. {HELP}");
    }
    let mut buffer = String::new();
    let mut failed = false;
    loop {
        let prompt = if buffer.is_empty() {
            "ballista> "
        } else {
            "      ..> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("Error: {e}");
                return ExitCode::from(1);
            }
        };
        let trimmed = line.trim();
        if buffer.is_empty() {
            match trimmed {
                "" => continue,
                "\\q" | "quit" | "exit" => break,
                "\\?" | "help" => {
                    eprintln!("{HELP}");
                    continue;
                }
                "\\d" => {
                    buffer = "SHOW TABLES;".to_string();
                }
                _ => {}
            }
        }
        if buffer.is_empty() || !buffer.ends_with(';') {
            if !buffer.is_empty() {
                buffer.push('\n');
            }
            buffer.push_str(&line);
        }
        if buffer.trim_end().ends_with(';') {
            let _ = editor.add_history_entry(buffer.as_str());
            let sql = std::mem::take(&mut buffer);
            let mut stdout = std::io::stdout();
            if let Err(e) = run_sql(ctx, &sql, &mut stdout, options).await {
                eprintln!(
                    "Error: {}",
                    ballista::BallistaError::from_datafusion(e).typed()
                );
                failed = true;
            }
        }
    }
    if !buffer.trim().is_empty() {
        let mut stdout = std::io::stdout();
        if let Err(e) = run_sql(ctx, &buffer, &mut stdout, options).await {
            eprintln!(
                "Error: {}",
                ballista::BallistaError::from_datafusion(e).typed()
            );
            failed = true;
        }
    }
    // Piped input behaves like -f: a failed statement makes the exit status non-zero.
    if failed && !interactive {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
