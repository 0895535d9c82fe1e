//! The `writ` command. `main` only calls [`run`]; everything else lives here so tests can drive
//! the same code.

pub mod cli;
pub mod platform;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, ServiceName};

/// Parses the command line, runs the command, and returns the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    // The allocator's housekeeping (crates/allocator): idle workers hand back their empty pages,
    // and a server's purger (below) returns freed memory to the OS while it is quiet.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .enable_all()
        .on_thread_park(writ_allocator::on_thread_park);
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // Servers trace (the exporter's connection lives on the runtime); client commands only log.
    let service = match &cli.command {
        Command::Up(_) => Some("writ".to_owned()),
        Command::Serve { service, .. } => Some(format!("writ-{}", service.name())),
        _ => None,
    };
    let server = service.is_some();
    let traces = match service {
        Some(service) => {
            let _runtime = runtime.enter();
            match writ_telemetry::Tracing::start(&service, cli.otlp_endpoint.as_deref()) {
                Ok(t) => Some(t),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        None => None,
    };
    writ_server::logging::init(&cli.log, cli.log_json, traces.as_ref());
    if server && let Err(e) = writ_allocator::start_purger() {
        tracing::warn!(error = %e, "cannot start the allocator's purger: idle memory goes back to the OS later");
    }
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => {
                let all = [
                    ServiceName::Authz,
                    ServiceName::Revocation,
                    ServiceName::Sts,
                ];
                serve(&args, &all).await
            }
            Command::ClusterInit(args) => finish(cli::cluster_init(args)),
            Command::Serve { service, args } => serve(&args, &[service]).await,
            Command::Token(args) => finish(cli::token(args).await),
            Command::Login(args) => finish(cli::login(args).await),
            Command::Inspect(args) => finish(cli::inspect(args).await),
            Command::Attenuate(args) => finish(cli::attenuate(args)),
            Command::Revoke(args) => finish(cli::revoke(args).await),
            Command::Watch(args) => finish(cli::watch(args).await),
            Command::Exchange(args) => finish(cli::exchange(args).await),
            Command::Admin { command, conn } => finish(cli::admin(command, conn).await),
            Command::Audit { command } => finish(cli::audit(command).await),
        }
    });
    // Exports the spans still batched, while the runtime still runs.
    if let Some(traces) = traces {
        let _runtime = runtime.enter();
        drop(traces);
    }
    code
}

/// Runs services until a signal, then stops them.
async fn serve(args: &cli::ServeArgs, services: &[ServiceName]) -> ExitCode {
    // Before start() writes endpoints.json: see until_signalled.
    let signalled = platform::until_signalled();
    let started = match args.platform(services) {
        Ok(config) => platform::Platform::start(config).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(p) => {
            platform::print_banner(&p);
            // Last: endpoints.json tells scripts (and tests) that the platform is up.
            if let Err(e) = p.write_endpoints() {
                eprintln!("error: {e:#}");
                p.stop().await;
                return ExitCode::from(1);
            }
            signalled.await;
            tracing::info!("shutting down");
            p.stop().await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn finish(result: Result<(), cli::CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
