//! `deploy-queries`: prints every PromQL expression of the monitoring mixin as JSON lines,
//! `{"source", "promql", "selectors": [..]}`, for `deploy/verify-stack.sh`.

fn main() {
    let queries = engram_deploy::queries().unwrap_or_else(|e| {
        eprintln!("deploy-queries: {e}");
        std::process::exit(1)
    });
    for q in &queries {
        let expr = engram_deploy::parse(q).unwrap_or_else(|e| {
            eprintln!("deploy-queries: {e}");
            std::process::exit(1)
        });
        let selectors: Vec<String> = engram_deploy::selectors(&expr).into_iter().map(|s| s.promql).collect();
        println!("{}", serde_json::json!({"source": q.source, "promql": q.promql, "selectors": selectors}));
    }
}
