//! Feeding every dataflow's sources from the log, once per round of the
//! worker loop.
//!
//! Time is the log's: each record is fed at the tick it was appended at,
//! and an input moves on as far as its topic's history is final, also when
//! idle, so frontiers always advance (DESIGN.md §2).
//!
//! Sources of one table that stand at the same position (every job of a
//! fresh start, or jobs that have caught up with each other) read together:
//! each record is read from the log and decoded once, and the row goes to
//! every one of their inputs, each at its own dataflow's time.

use std::collections::HashMap;

use weir_dataflows::catalog::DataflowId;
use weir_operators::repr::Tick;

use weir_connectors::dead_letters::Position;
use weir_connectors::log::LogRecord;
use weir_connectors::source::{read_together, Feeding, Progress, Read, Rejected};

use super::dataflow::{fits, push, Source};
use super::WorkerState;
use crate::shared::Shared;

/// One source in this round: where it is fed and what it may do.
struct Member<'a> {
    df: DataflowId,
    feeding: &'a Feeding,
    source: &'a mut Source,
    may_read: bool,
    /// A checked-only source whose records other readers of its table
    /// already read (see [`feeders_of_checked_tables`]).
    covered: bool,
}

/// Reads what there is into every dataflow's inputs; true when more is
/// there to read right now (the worker then steps without parking).
pub fn feed(state: &mut WorkerState, now: Tick) -> bool {
    let feeders = feeders_of_checked_tables(state);
    let shared = &state.shared;
    let mut members: Vec<Member<'_>> = Vec::new();
    for (df, d) in state.dataflows.iter_mut() {
        let may_read = d.may_read();
        for (i, source) in d.sources.iter_mut().enumerate() {
            // A table only checked here (a job's own table that only other
            // jobs' views read) is decoded once, by the jobs that read it:
            // this reader follows theirs instead of decoding it again, and
            // reads itself only what no such reader covers.
            let covered = feeders.get(&(*df, i)).is_some_and(|f| source.reader.follow(f));
            members.push(Member {
                df: *df,
                feeding: &d.feeding,
                source,
                may_read,
                covered,
            });
        }
    }
    let reads = read_in_groups(&mut members, shared, now);
    // Per dataflow: the latest time fed, how far behind it is, and whether
    // it could read this round.
    let mut progress: HashMap<DataflowId, (Option<Tick>, u64, bool)> = HashMap::new();
    for (m, read) in members.iter_mut().zip(reads) {
        let (fed_until, lag, may_read) = progress.entry(m.df).or_default();
        *may_read = m.may_read;
        if read.records > 0 {
            *fed_until = (*fed_until).max(Some(read.fed_until));
        }
        *lag += read.behind;
        let input = &mut m.source.input;
        let t = read.frontier.max(input.time());
        input.advance_to(t);
        input.flush();
    }
    drop(members);
    let mut more_to_read = false;
    for (df, d) in state.dataflows.iter_mut() {
        let (fed_until, behind, may_read) = progress.get(df).copied().unwrap_or_default();
        if let Some(t) = fed_until {
            if !d.in_flight.contains(&t) {
                d.in_flight.push(t);
            }
            shared.sources.fed_through(*df, state.index, t);
        }
        more_to_read |= may_read && behind > 0;
        shared.sources.set_lag(*df, state.index, behind);
    }
    more_to_read
}

/// Reads every member's records, those at the same position of the same
/// table together; each member's [`Read`], in the members' order.
fn read_in_groups(members: &mut [Member<'_>], shared: &Shared, now: Tick) -> Vec<Read> {
    let mut reads = vec![Read::default(); members.len()];
    let mut grouped = vec![false; members.len()];
    for first in 0..members.len() {
        if grouped[first] {
            continue;
        }
        let group: Vec<usize> = (first..members.len())
            .filter(|&j| {
                !grouped[j]
                    && members[j].source.decoder.table() == members[first].source.decoder.table()
                    && members[j].source.reader.same_position(&members[first].source.reader)
            })
            .collect();
        for &j in &group {
            grouped[j] = true;
        }
        // A group reads only when each of its dataflows may: they stay at
        // one position, and none reads ahead of its own backlog.
        let may_read = group.iter().all(|&j| members[j].may_read);
        // Covered members need no read of their own.
        let covered = group.iter().all(|&j| members[j].covered);
        let mut in_group: Vec<&mut Member<'_>> = members
            .iter_mut()
            .enumerate()
            .filter(|(j, _)| group.contains(j))
            .map(|(_, m)| m)
            .collect();
        let got = read_group(&mut in_group, shared, now, may_read && !covered);
        for (&j, read) in group.iter().zip(got) {
            reads[j] = read;
        }
    }
    reads
}

/// One group's read: each record decoded once and pushed into every
/// member's input at that member's time.
fn read_group(group: &mut [&mut Member<'_>], shared: &Shared, now: Tick, may_read: bool) -> Vec<Read> {
    let table = group[0].source.decoder.table().clone();
    let mut readers = Vec::with_capacity(group.len());
    let mut sinks = Vec::with_capacity(group.len());
    for m in group.iter_mut() {
        let Source {
            decoder,
            reader,
            input,
            feeds,
            ingested,
            rejected,
        } = &mut *m.source;
        readers.push((reader, m.feeding));
        sinks.push((decoder, input, *feeds, ingested, rejected));
    }
    let reject = |partition: u32, rec: &LogRecord, reason: &str| Rejected {
        position: Position {
            topic: table.log_topic.clone(),
            partition,
            offset: rec.offset,
        },
        payload: String::from_utf8_lossy(&rec.payload).into_owned(),
        reason: reason.into(),
    };
    read_together(
        &mut readers,
        &shared.log,
        shared.read_chunk,
        may_read,
        |partition, rec, at| {
            let decoded = match sinks[0].0.decode(partition, rec) {
                Ok(d) => d,
                Err(r) => {
                    for s in sinks.iter() {
                        s.4.inc();
                    }
                    shared.dead_letters.send(r.into_dead_letter(&table.name, now as i64));
                    return;
                }
            };
            // A member that feeds nothing only checks the row; of those that
            // feed their inputs, the last takes the row, the others a copy.
            // The members read one table, so their inputs are of one kind:
            // one check answers for all.
            let checked = fits(sinks[0].1, &decoded);
            let last = sinks.iter().rposition(|s| s.2);
            let mut decoded = Some(decoded);
            for (k, (_, input, feeds, ingested, rejected)) in sinks.iter_mut().enumerate() {
                let fed = if *feeds {
                    let row = if Some(k) == last {
                        decoded.take()
                    } else {
                        decoded.clone()
                    };
                    match row {
                        Some(row) => push(input, row, rec.seq, at[k]),
                        None => continue,
                    }
                } else {
                    checked
                };
                match fed {
                    Ok(()) => ingested.inc(),
                    Err(reason) => {
                        rejected.inc();
                        shared
                            .dead_letters
                            .send(reject(partition, rec, reason).into_dead_letter(&table.name, now as i64));
                    }
                }
            }
        },
    )
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
