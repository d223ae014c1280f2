//! The HTTP client commands: `weir submit`, `sql`, `query`, `produce`
//! (into the embedded log) and `replay`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

fn client_error(e: ureq::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn print_response(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<()> {
    let mut resp = resp.map_err(client_error)?;
    let status = resp.status();
    let body = resp.body_mut().read_to_string().map_err(client_error)?;
    let pretty = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(body);
    println!("{pretty}");
    if !status.is_success() {
        bail!("HTTP {status}");
    }
    Ok(())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

pub fn submit(file: &Path, name: Option<String>, url: &str) -> Result<()> {
    let sql = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = name.unwrap_or_else(|| file.file_stem().and_then(|s| s.to_str()).unwrap_or("job").to_string());
    let agent = agent();
    let exists = agent
        .get(format!("{url}/v1/jobs/{name}"))
        .call()
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    let resp = if exists {
        agent
            .put(format!("{url}/v1/jobs/{name}"))
            .send_json(serde_json::json!({"sql": sql}))
    } else {
        agent
            .post(format!("{url}/v1/jobs"))
            .send_json(serde_json::json!({"name": name, "sql": sql}))
    };
    print_response(resp)
}

pub fn query(
    view: &str,
    keys: &[String],
    limit: Option<usize>,
    after: &[String],
    as_of: Option<u64>,
    url: &str,
) -> Result<()> {
    let mut req = agent().get(format!("{url}/v1/views/{view}"));
    for k in keys {
        let Some((c, v)) = k.split_once('=') else {
            bail!("--key takes COLUMN=VALUE, got {k}");
        };
        req = req.query(c, v);
    }
    if let Some(l) = limit {
        req = req.query("limit", l.to_string());
    }
    for t in after {
        req = req.query("after", t);
    }
    if let Some(t) = as_of {
        req = req.query("as_of", t.to_string());
    }
    print_response(req.call())
}

pub fn produce(topic: &str, file: Option<PathBuf>, url: &str, batch: usize) -> Result<()> {
    let text = match file {
        Some(f) => std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?,
        None => std::io::read_to_string(std::io::stdin())?,
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let agent = agent();
    for chunk in lines.chunks(batch.max(1)) {
        let body = chunk.join("\n");
        print_response(
            agent
                .post(format!("{url}/v1/topics/{topic}/events"))
                .content_type("application/x-ndjson")
                .send(body),
        )?;
    }
    Ok(())
}

/// `weir replay`: starts a rebuild and draws its progress on stderr.
pub fn replay(job: &str, from: &str, url: &str) -> Result<()> {
    use std::io::Write as _;
    let from = match from.parse::<u64>() {
        Ok(ms) => serde_json::json!(ms),
        Err(_) => serde_json::json!(from),
    };
    let agent = agent();
    let started: serde_json::Value = agent
        .post(format!("{url}/v1/jobs/{job}/rebuild"))
        .send_json(serde_json::json!({ "from": from }))
        .map_err(client_error)?
        .body_mut()
        .read_json()?;
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_line = String::new();
    let mut status = started;
    loop {
        if status["status"] != "replacing" {
            break;
        }
        let p = &status["rebuild"];
        let done = p["events_done"].as_u64().unwrap_or(0);
        let total = p["events_total"].as_u64().unwrap_or(0).max(1);
        let width = 30;
        let filled = ((done as f64 / total as f64) * width as f64).round() as usize;
        let eta = p["eta_s"].as_f64().map_or("?".to_string(), |e| format!("{e:.0}s"));
        let line = format!(
            "[{}{}] {:>3}% {done}/{total} events, {} events/s, ETA {eta}",
            "#".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width)),
            done * 100 / total,
            p["rate_per_s"].as_f64().unwrap_or(0.0) as u64,
        );
        if interactive {
            eprint!("\r{line}");
        } else if line != last_line {
            eprintln!("{line}");
        }
        last_line = line;
        let _ = std::io::stderr().flush();
        std::thread::sleep(Duration::from_millis(200));
        status = agent
            .get(format!("{url}/v1/jobs/{job}"))
            .call()
            .map_err(client_error)?
            .body_mut()
            .read_json()?;
    }
    if interactive {
        eprintln!();
    }
    eprintln!("weir: job {job} rebuilt; its new views are serving");
    println!("{status}");
    Ok(())
}

/// `weir sql`: DROP statements on a running engine.
pub fn sql(statements: &str, url: &str) -> Result<()> {
    print_response(
        agent()
            .post(format!("{url}/v1/sql"))
            .send_json(serde_json::json!({ "sql": statements })),
    )
}

/// `weir snapshot [JOB]`: asks for a snapshot and prints what was started.
pub fn snapshot(job: Option<&str>, url: &str) -> Result<()> {
    let path = match job {
        Some(j) => format!("{url}/v1/jobs/{j}/snapshot"),
        None => format!("{url}/v1/snapshots"),
    };
    let answer: serde_json::Value = agent()
        .post(path)
        .send_empty()
        .map_err(client_error)?
        .body_mut()
        .read_json()?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

/// `weir retention TOPIC [--age A] [--bytes B] [--compact] [--keep-all]`.
pub fn retention(
    topic: &str,
    age: Option<String>,
    bytes: Option<String>,
    compact: bool,
    keep_all: bool,
    url: &str,
) -> Result<()> {
    let path = format!("{url}/v1/topics/{topic}");
    let answer: serde_json::Value = if keep_all || compact || age.is_some() || bytes.is_some() {
        let retention = if keep_all {
            serde_json::Value::Null
        } else {
            let mut r = serde_json::Map::new();
            if let Some(a) = age {
                r.insert("age".into(), a.into());
            }
            if let Some(b) = bytes {
                r.insert("bytes".into(), b.into());
            }
            if compact {
                r.insert("compact".into(), true.into());
            }
            r.into()
        };
        agent()
            .post(path)
            .send_json(serde_json::json!({ "retention": retention }))
            .map_err(client_error)?
            .body_mut()
            .read_json()?
    } else {
        agent().get(path).call().map_err(client_error)?.body_mut().read_json()?
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

/// `weir subscribe VIEW [--key C=V]… [--from-as-of T]`: the view's
/// server-sent events, one JSON object per line (`{"event", "id", "data"}`),
/// until the engine ends the stream.
pub fn subscribe(view: &str, key: &[String], from_as_of: Option<u64>, url: &str) -> Result<()> {
    use std::io::{BufRead, Write};
    let mut params: Vec<(String, String)> = Vec::new();
    for k in key {
        let (c, v) = k
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--key {k}: expected COLUMN=VALUE"))?;
        params.push((c.to_string(), v.to_string()));
    }
    if let Some(t) = from_as_of {
        params.push(("from_as_of".into(), t.to_string()));
    }
    let query = serde_urlencoded::to_string(&params)?;
    let mut resp = agent()
        .get(format!("{url}/v1/views/{view}/changes?{query}"))
        .call()
        .map_err(client_error)?;
    if resp.status() != 200 {
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        anyhow::bail!("{}: {text}", resp.status());
    }
    let reader = std::io::BufReader::new(resp.body_mut().as_reader());
    let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
    let stdout = std::io::stdout();
    for line in reader.lines() {
        let line = line?;
        if line.is_empty() {
            if !data.is_empty() {
                let data: serde_json::Value =
                    serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data.clone()));
                let mut out = stdout.lock();
                writeln!(out, "{}", serde_json::json!({"event": event, "id": id, "data": data}))?;
                out.flush()?;
            }
            event.clear();
            id.clear();
            data.clear();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    Ok(())
}

/// `weir dlq list`.
pub fn dlq_list(after: Option<u64>, limit: usize, url: &str) -> Result<()> {
    let mut req = agent().get(format!("{url}/v1/dlq")).query("limit", limit.to_string());
    if let Some(a) = after {
        req = req.query("after", a.to_string());
    }
    print_response(req.call())
}

/// `weir dlq replay`: prints what became of each letter.
pub fn dlq_replay(cursors: &[u64], source: Option<&str>, limit: usize, again: bool, url: &str) -> Result<()> {
    if cursors.is_empty() && source.is_none() {
        bail!("name the letters to replay: their cursors, or --source");
    }
    let body = serde_json::json!({"cursors": cursors, "source": source, "limit": limit, "again": again});
    print_response(
        agent()
            .post(format!("{url}/v1/dlq/replay"))
            .content_type("application/json")
            .send(body.to_string()),
    )
}
