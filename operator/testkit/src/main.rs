//! `drover-genrepo OUT [--services N] [--environments N] [--revision R]`: writes a
//! generated config repo for benchmarks.

use anyhow::{Context, bail};
use drover_testkit::{Shape, repo, write};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut out = None;
    let mut shape = Shape {
        services: 10_000,
        environments: 10,
    };
    let mut revision = 0;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> anyhow::Result<usize> {
            args.next()
                .with_context(|| format!("{name} needs a number"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--services" => shape.services = value("--services")?,
            "--environments" => shape.environments = value("--environments")?,
            "--revision" => revision = value("--revision")? as u32,
            other if other.starts_with('-') => bail!("unknown option {other}"),
            other => out = Some(other.to_owned()),
        }
    }
    let out =
        out.context("usage: drover-genrepo OUT [--services N] [--environments N] [--revision R]")?;
    write(std::path::Path::new(&out), &repo(shape, revision))
        .with_context(|| format!("writing {out}"))?;
    println!(
        "wrote {} services in {} environments to {out}",
        shape.services, shape.environments
    );
    Ok(())
}
