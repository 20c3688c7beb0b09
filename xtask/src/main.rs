//! `cargo xtask …`: development tasks that are code, not shell lore: preparing the test
//! environment, running every test the way CI does, and the one-node test cluster.

mod bench;
mod cluster;
mod image;
mod podman;
mod run_cmd;
mod test_env;
mod test_run;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(task) = args.next() else {
        print_help();
        return Ok(());
    };
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "test" => test_run::run(&rest),
        "bench" => bench::run(&rest),
        "test-env" => test_env::run(&rest),
        "cluster" => cluster::run(&rest),
        "image" => image::run(&rest),
        "crds" => test_env::crds::run(&rest),
        "podman" => podman::run(&rest),
        "help" | "--help" | "-h" => {
            print_help();
            Ok(())
        }
        other => bail!("unknown task `{other}`; run `cargo xtask help`"),
    }
}

fn print_help() {
    println!(
        "cargo xtask <task>\n\n\
         tasks:\n  \
         test        install test tools (cached), then fmt, clippy and every test, timing each phase\n  \
         test-env    install the tools the tests need into the cache and print their locations\n  \
         cluster     up | down | clean | status | smoke | push-image | kubectl …: the one-node Kubernetes test cluster (`cargo xtask cluster help`)\n  \
         image       build Apiary's and the fixture server's images; --push puts them in the test cluster\n  \
         podman      up | down | env: rootful Podman's Docker-API service for the container tests\n  \
         bench       the benchmark matrix: the fixture directly, Apiary's proxy and the pinned peers, in one run (`cargo xtask bench --help`)\n  \
         crds        fetch the third-party CRDs seed 004 applies (Gateway API, Istio, Kuadrant) and print their dir"
    );
}
