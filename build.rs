// include_dir! and sqlx::migrate! do not notice new or edited files on stable Rust.
fn main() {
    println!("cargo:rerun-if-changed=lua");
    println!("cargo:rerun-if-changed=migrations");
}
