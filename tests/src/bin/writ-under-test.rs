fn main() -> std::process::ExitCode {
    writ::run()
}
