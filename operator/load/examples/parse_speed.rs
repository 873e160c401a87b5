//! Ad-hoc timing of the loader's phases on a repo folder (the benchmark of record is
//! benches/validate.sh).
use std::time::Instant;
fn main() {
    let dir = std::env::args().nth(1).expect("usage: parse_speed DIR");
    let t = Instant::now();
    let files = drover_load::read_dir(std::path::Path::new(&dir)).unwrap();
    println!("read {:?}", t.elapsed());
    let t = Instant::now();
    let loaded = drover_load::load(&files);
    println!("load {:?}", t.elapsed());
    let t = Instant::now();
    let d = drover_validate::validate(&loaded.repo);
    println!("validate {:?} ({} findings)", t.elapsed(), d.len());
    let t = Instant::now();
    drop(loaded);
    drop(files);
    println!("drop {:?}", t.elapsed());
}
