//! The load over HTTP: `POST /v1/spaces/{space}/observations?wait={--wait}` (one response per
//! batch, once it reached that level) and `POST .../recall`.

use super::drive::{Event, Transport};
use super::{Data, LoadArgs, Wait};
use anyhow::{Context, bail};
use engram_engine::SpaceParams;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

const PRIORITIES: [&str; 3] = ["high", "normal", "low"];

/// What one POST of observations came back with: the level its `status` names (`indexed`
/// counted when indexed), or a refusal.
enum Outcome {
    Acked { accepted: u64, duplicates: u64, status: Wait, indexed: u64 },
    Rejected { reason: String, retry_after: Duration },
}

/// An HTTP client with up to `concurrency` POSTs in flight.
pub(super) struct Http<'a> {
    data: &'a Data,
    client: reqwest::Client,
    space_url: String,
    /// `{space_url}/observations?wait={wait}`, built once.
    observations_url: Arc<str>,
    /// `{space_url}/recall`, built once.
    recall_url: String,
    posts: FuturesUnordered<BoxFuture<'static, (usize, anyhow::Result<Outcome>)>>,
    /// The `Durable` and `Indexed` that follow an `Accepted` (HTTP acknowledges at once).
    pending: Vec<Event>,
    /// Send a `traceparent` header with each batch (`--trace`).
    trace: bool,
}

impl<'a> Http<'a> {
    /// Drops and re-creates `space` on the server at `server` with `params`.
    pub(super) async fn connect(
        args: &LoadArgs,
        data: &'a Data,
        space: &str,
        params: &SpaceParams,
    ) -> anyhow::Result<Self> {
        let (wait, trace) = (args.wait, args.trace);
        let base_url = args.server.trim_end_matches('/');
        let client = super::http_client(args)?;
        let space_url = format!("{base_url}/v1/spaces/{space}");
        let r = client.delete(&space_url).send().await.with_context(|| format!("connecting to {base_url}"))?;
        if !(r.status().is_success() || r.status().as_u16() == 404) {
            bail!("dropping space {space}: {}", r.status());
        }
        let r = client.put(&space_url).json(params).send().await?;
        if !r.status().is_success() {
            bail!("creating space {space}: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
        let observations_url = format!("{space_url}/observations?wait={}", wait.as_str()).into();
        let recall_url = format!("{space_url}/recall");
        Ok(Self {
            data,
            client,
            space_url,
            observations_url,
            recall_url,
            posts: FuturesUnordered::new(),
            pending: Vec::new(),
            trace,
        })
    }
}

async fn post_batch(
    client: reqwest::Client,
    url: Arc<str>,
    body: Value,
    traceparent: Option<String>,
) -> anyhow::Result<Outcome> {
    let mut post = client.post(&*url).json(&body);
    if let Some(tp) = traceparent {
        post = post.header("traceparent", tp);
    }
    let resp = post.send().await.context("POST observations")?;
    let status = resp.status();
    let v: Value = resp.json().await.context("reading the response")?;
    if status.as_u16() == 429 || status.as_u16() == 503 {
        let e = &v["error"];
        let reason = e["reason"].as_str().unwrap_or("unknown").to_owned();
        let retry_after = Duration::from_millis(e["retry_after_ms"].as_u64().unwrap_or(1000).max(1));
        return Ok(Outcome::Rejected { reason, retry_after });
    }
    if status.as_u16() != 200 && status.as_u16() != 202 {
        bail!("server answered {status}: {v}");
    }
    if v["failed"].as_u64().unwrap_or(0) > 0 {
        bail!("observations failed to index: {v}");
    }
    let status = match v["status"].as_str() {
        Some("accepted") => Wait::Accepted,
        Some("durable") => Wait::Durable,
        Some("indexed") => Wait::Indexed,
        _ => bail!("a response without a known status: {v}"),
    };
    Ok(Outcome::Acked {
        accepted: v["accepted"].as_u64().unwrap_or(0),
        duplicates: v["duplicates"].as_u64().unwrap_or(0),
        status,
        indexed: v["indexed"].as_u64().unwrap_or(0),
    })
}

impl Transport for Http<'_> {
    async fn send(&mut self, batch: usize, rows: Range<usize>, priority: usize) -> anyhow::Result<()> {
        let observations: Vec<Value> = rows
            .map(|i| {
                let mut o = json!({"id": i, "embedding": self.data.base.row(i)});
                if let Some(c) = &self.data.content {
                    o["content"] = json!(c[i]);
                }
                o
            })
            .collect();
        let body = json!({"priority": PRIORITIES[priority], "observations": observations});
        let url = Arc::clone(&self.observations_url);
        let client = self.client.clone();
        let traceparent = self.trace.then(|| super::traceparent_logged(batch));
        self.posts.push(Box::pin(async move { (batch, post_batch(client, url, body, traceparent).await) }));
        Ok(())
    }

    async fn next_event(&mut self) -> anyhow::Result<Event> {
        if let Some(event) = self.pending.pop() {
            return Ok(event);
        }
        let Some((batch, outcome)) = self.posts.next().await else { bail!("no batch in flight") };
        match outcome? {
            Outcome::Acked { accepted, duplicates, status, indexed } => {
                // Popped last first: Durable (a durable response), then Indexed.
                if status == Wait::Indexed {
                    self.pending.push(Event::Indexed { batch, indexed });
                }
                if status == Wait::Durable {
                    self.pending.push(Event::Durable { batch });
                }
                Ok(Event::Accepted { batch, accepted, duplicates })
            }
            Outcome::Rejected { reason, retry_after } => Ok(Event::Rejected { batch, reason, retry_after }),
        }
    }

    async fn space_vectors(&mut self) -> anyhow::Result<u64> {
        let info: Value = self.client.get(&self.space_url).send().await?.json().await?;
        Ok(info["vectors"].as_u64().unwrap_or(0))
    }

    async fn recall(&mut self, embedding: &[f32], k: usize, ef_search: Option<usize>) -> anyhow::Result<Vec<u64>> {
        let body = json!({"embedding": embedding, "k": k, "ef_search": ef_search});
        let resp = self.client.post(&self.recall_url).json(&body).send().await?;
        if !resp.status().is_success() {
            bail!("recall answered {}: {}", resp.status(), resp.text().await.unwrap_or_default());
        }
        let v: Value = resp.json().await?;
        Ok(v["hits"].as_array().map(|a| a.iter().filter_map(|h| h["id"].as_u64()).collect()).unwrap_or_default())
    }
}
