//! `docs/metrics.md` holds exactly the catalog's table, so the documented metrics are the
//! exported ones. Regenerate with `engram-stream catalog --format markdown`.

#[test]
fn docs_metrics_md_matches_the_catalog() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    let doc = std::fs::read_to_string(&path).expect("docs/metrics.md exists");
    let table = engram_telemetry::catalog::markdown_table();
    assert!(
        doc.contains(&table),
        "docs/metrics.md is out of date: replace its table with the output of `engram-stream catalog --format markdown`"
    );
}
