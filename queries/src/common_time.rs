//! One read time for several views, so that one request reading many (a
//! GraphQL operation with a field per view) sees them mutually consistent:
//! the latest time complete in every one of them, after every given write.
//! Each view is then read exactly at it (`ReadOptions::as_of`).

use std::time::{Duration, Instant};

use weir_operators::repr::Tick;

use crate::error::ReadError;
use crate::reader::{required_time, timed_out, ReadContext};
use crate::token::Token;

/// How long a look waits for the laggard to publish before looking again
/// (a write not in the log yet is looked up again then).
const LOOK_AGAIN: Duration = Duration::from_millis(100);

/// The latest time complete in every one of `views` (at their current
/// versions) that reflects every write in `after`; waits up to `timeout`
/// for it, sleeping until the view furthest behind publishes.
pub async fn common_as_of(
    ctx: &impl ReadContext,
    views: &[String],
    after: &[Token],
    timeout: Duration,
) -> Result<Tick, ReadError> {
    let deadline = Instant::now() + timeout;
    let mut appended: Vec<Option<Tick>> = vec![None; after.len()];
    loop {
        let mut required = Some(0);
        let mut looked = Vec::with_capacity(views.len());
        for view in views {
            let version = ctx.view(view)?;
            required = match (required, required_time(ctx, &version, after, &mut appended)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            looked.push((view.as_str(), version.df, ctx.read_copy(version.df, view)));
        }
        // Registered before looking, so a publish in between is not missed.
        let mut published: Vec<_> = looked
            .iter()
            .map(|(_, _, h)| h.as_ref().map(|h| Box::pin(h.published.notified())))
            .collect();
        for n in published.iter_mut().flatten() {
            n.as_mut().enable();
        }
        // The view furthest behind (`None`, nothing complete yet, is the
        // furthest), and how far it is complete.
        let mut laggard: Option<(usize, Option<Tick>)> = None;
        for (i, (view, df, handle)) in looked.iter().enumerate() {
            let complete = match handle {
                Some(h) => h.copy.load().complete(),
                None => ctx.frontiers().complete_through(*df, view),
            };
            let behind = match laggard {
                None => true,
                Some((_, least)) => match (complete, least) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(a), Some(b)) => a < b,
                },
            };
            if behind {
                laggard = Some((i, complete));
            }
        }
        let Some((i, complete)) = laggard else {
            return Err(ReadError::BadRequest {
                code: "no_views",
                message: "a common read time needs at least one view".into(),
            });
        };
        if let (Some(r), Some(c)) = (required, complete) {
            if r <= c {
                return Ok(c);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out(looked[i].0, complete, timeout));
        }
        let wait = (deadline - now).min(LOOK_AGAIN);
        match published[i].take() {
            Some(n) => {
                let _ = tokio::time::timeout(wait, n).await;
            }
            // A view read through the workers has no publish to wait on.
            None => tokio::time::sleep(wait.min(Duration::from_millis(1))).await,
        };
    }
}
