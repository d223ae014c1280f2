//! Feeding every dataflow's sources from the log, once per round of the
//! worker loop.
//!
//! Time is the log's: each record is fed at the tick it was appended at,
//! and an input moves on as far as its topic's history is final, also when
//! idle, so frontiers always advance (DESIGN.md §2).

use std::collections::HashMap;

use weir_dataflows::catalog::DataflowId;
use weir_operators::repr::Tick;

use weir_connectors::dead_letters::Position;
use weir_connectors::source::{Progress, Rejected};

use super::dataflow::{push, Source};
use super::WorkerState;

/// Reads what there is into every dataflow's inputs; true when more is
/// there to read right now (the worker then steps without parking).
pub fn feed(state: &mut WorkerState, now: Tick) -> bool {
    let feeders = feeders_of_checked_tables(state);
    let shared = &state.shared;
    let mut more_to_read = false;
    for (df, d) in state.dataflows.iter_mut() {
        let mut lag = 0u64;
        let may_read = d.may_read();
        let mut fed_until = None;
        for (i, src) in d.sources.iter_mut().enumerate() {
            // A table only checked here (a job's own table that only other
            // jobs' views read) is decoded once, by the jobs that read it:
            // this reader follows theirs instead of decoding it again, and
            // reads itself only what no such reader covers.
            let covered = feeders.get(&(*df, i)).is_some_and(|f| src.reader.follow(f));
            let Source {
                decoder,
                reader,
                input,
                feeds,
                ingested,
                rejected,
            } = src;
            let table = decoder.table();
            let read = reader.read(
                &shared.log,
                &d.feeding,
                shared.read_chunk,
                may_read && !covered,
                |partition, rec, at| {
                    let fed = decoder.decode(partition, rec).and_then(|decoded| {
                        push(input, *feeds, decoded, rec.seq, at).map_err(|reason| Rejected {
                            position: Position {
                                topic: table.log_topic.clone(),
                                partition,
                                offset: rec.offset,
                            },
                            payload: String::from_utf8_lossy(&rec.payload).into_owned(),
                            reason: reason.into(),
                        })
                    });
                    match fed {
                        Ok(()) => ingested.inc(),
                        Err(r) => {
                            rejected.inc();
                            shared.dead_letters.send(r.into_dead_letter(&table.name, now as i64));
                        }
                    }
                },
            );
            if read.records > 0 {
                fed_until = fed_until.max(Some(read.fed_until));
            }
            lag += read.behind;
            let t = read.frontier.max(input.time());
            input.advance_to(t);
            input.flush();
        }
        if let Some(t) = fed_until {
            if !d.in_flight.contains(&t) {
                d.in_flight.push(t);
            }
            shared.sources.fed_through(*df, state.index, t);
        }
        more_to_read |= may_read && lag > 0;
        shared.sources.set_lag(*df, state.index, lag);
    }
    more_to_read
}

/// For each source that feeds nothing, how far the feeding readers of the
/// same table on this worker have read it (sources with none are left out).
fn feeders_of_checked_tables(state: &WorkerState) -> HashMap<(DataflowId, usize), Vec<Progress>> {
    let mut out = HashMap::new();
    for (df, d) in &state.dataflows {
        for (i, checked) in d.sources.iter().enumerate().filter(|(_, s)| !s.feeds) {
            let progress: Vec<Progress> = state
                .dataflows
                .values()
                .flat_map(|other| other.sources.iter())
                .filter(|s| s.feeds && s.decoder.table() == checked.decoder.table())
                .filter_map(|s| s.reader.progress())
                .flatten()
                .collect();
            if !progress.is_empty() {
                out.insert((*df, i), progress);
            }
        }
    }
    out
}
