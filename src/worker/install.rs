//! `Command::Install`: renders a job version as a dataflow on this worker
//! and opens its sources.

use std::collections::HashMap;

use weir_connectors::sink::SinkMsg;
use weir_connectors::source::{PartitionReader, TableDecoder, TableFormat};
use weir_dataflows::plan::{SinkPlan, TablePlan};
use weir_dataflows::render::{render_job, SinkOutput};
use weir_operators::sink::Delivery;

use super::command::Install;
use super::dataflow::{Dataflow, Source, View};
use super::WorkerState;
use crate::shared::sink_key;

/// What a source's decoder needs to know of its table.
pub fn table_format(t: &TablePlan) -> TableFormat {
    TableFormat {
        name: t.name.clone(),
        schema: t.schema.clone(),
        primary_key: t.primary_key.clone(),
        log_topic: t.topic().to_string(),
        kafka_topic: t.kafka().map(|k| k.topic.clone()),
    }
}

pub fn install(state: &mut WorkerState, worker: &mut timely::worker::Worker, cmd: Install) {
    let Install {
        df,
        job,
        sources,
        views,
        imports,
        feeding,
        sinks,
        skip_before,
        restore,
        until,
    } = cmd;
    let shared = &state.shared;
    let mut import_traces = HashMap::new();
    for (view, from) in &imports {
        if let Some(v) = state
            .dataflows
            .get(from)
            .and_then(|d| d.views.iter().find(|v| v.name == *view))
        {
            import_traces.insert(view.clone(), v.trace.clone());
        }
    }
    let index_before = worker.next_dataflow_index();
    // The writers of the job's sinks, on worker 0 (where the changes are
    // delivered).
    let mut senders: HashMap<String, std::sync::mpsc::Sender<SinkMsg>> = HashMap::new();
    if state.index == 0 {
        let writers = shared.connectors.sinks();
        for s in &sinks {
            if let Some(w) = writers.get(&sink_key(s)) {
                senders.insert(s.name.clone(), w.sender());
            }
        }
    }
    let mut sink_output = |s: &SinkPlan| -> SinkOutput {
        let Some(tx) = senders.remove(&s.name) else {
            return Box::new(|_| {});
        };
        Box::new(move |d| {
            let msg = match d {
                Delivery::Changes(as_of, changes) => SinkMsg::Changes {
                    version: df,
                    as_of,
                    changes,
                },
                Delivery::Frontier(frontier) => SinkMsg::Frontier { version: df, frontier },
            };
            // A stopped writer (its sink dropped) takes nothing.
            let _ = tx.send(msg);
        })
    };
    let errors = std::rc::Rc::clone(&state.errors);
    let state_source = restore
        .as_ref()
        .map(|point| super::snapshot::state_source(state, point));
    // Views that opted out, and a dataflow built for one point-in-time
    // read, are read through the workers only.
    let copies = &shared.copies;
    let index = state.index;
    let installed = feeding.since;
    let with_copy: Vec<String> = views
        .iter()
        .filter(|v| v.read_copy && until.is_none())
        .map(|v| v.name.clone())
        .collect();
    let mut read_copy = |view: &str| {
        with_copy
            .iter()
            .any(|v| v == view)
            .then(|| copies.get_or_create(df, view, installed).copy.writer(index))
    };
    let rendered = worker.dataflow_named(&format!("job {job}"), |scope| {
        render_job(
            scope,
            state_source,
            &sources,
            &views,
            &mut import_traces,
            &errors,
            &sinks,
            &mut sink_output,
            &mut read_copy,
        )
    });
    let mut cuts = rendered.cuts;
    if state.index == 0 {
        shared.snapshots.set_support(df, cuts.unsupported.clone());
    }
    cuts.state_source = None;
    if let Some(point) = &restore {
        super::snapshot::restore(state, df, point, &mut cuts);
    }
    // Closes the restore inputs: nothing more comes through them.
    cuts.restores.clear();
    let mut srcs = Vec::new();
    for (name, input) in rendered.sources {
        let Some(table) = sources.iter().find(|t| t.name == name) else {
            continue;
        };
        let labels = [table.name.as_str()];
        srcs.push(Source {
            decoder: TableDecoder::new(table_format(table)),
            reader: PartitionReader::new(&shared.log, table.topic(), (state.index, state.peers), skip_before)
                .until(until),
            input,
            feeds: views.iter().any(|v| v.depends_on.contains(&table.name)),
            ingested: shared.metrics.ingested.with_label_values(&labels),
            rejected: shared.metrics.dead_letters.with_label_values(&labels),
        });
    }
    let views: Vec<View> = rendered
        .views
        .into_iter()
        .map(|v| View {
            name: v.name,
            trace: v.trace,
            rows: v.rows,
            patterns: v.patterns,
            upper: v.probe,
            since: 0,
        })
        .collect();
    shared.frontiers.register(df, views.iter().map(|v| v.name.as_str()));
    state.dataflows.insert(
        df,
        Dataflow {
            index: index_before,
            sources: srcs,
            views,
            feeding,
            in_flight: Vec::new(),
            cuts: cuts.traces,
            cuts_since: 0,
        },
    );
}
