fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(tfe_run::cli::main())
}
