// glibc's allocator slows down as a long-lived server's heap fragments: with a million live
// revocations loaded, small allocations on the request path took the slow path often enough to
// cost `client_credentials` 13 % (BENCHMARKS.md, issue 14). mimalloc keeps per-thread free lists
// and returns memory to the OS as it goes; crates/allocator sets it up and keeps it returning
// memory while the server is idle.
#[global_allocator]
static GLOBAL: writ_allocator::Allocator = writ_allocator::Allocator;

fn main() -> std::process::ExitCode {
    writ_allocator::configure();
    writ::run()
}
