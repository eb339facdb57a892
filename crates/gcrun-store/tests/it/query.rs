use std::collections::HashSet;

use gcrun_model::{Flavor, RequestLimits, RunId, RunRequest, RunStatus};
use gcrun_store::{PageRequest, RunFilter, RunUpdate, Store};

use crate::store;

fn tagged(batch: &str) -> RunRequest {
    RunRequest::builder(Flavor::Runs, "custom_-_a")
        .input("customerId", "42")
        .metadata("batch", batch)
        .build(&RequestLimits::default())
        .unwrap()
}

/// Walks a listing page by page; returns every run id in order and the
/// number of pages.
async fn walk(
    store: &Store,
    filter: &RunFilter,
    limit: usize,
    newest_first: bool,
    budget: usize,
    dlq: bool,
) -> (Vec<RunId>, usize) {
    let (mut ids, mut pages, mut after) = (Vec::new(), 0, None::<String>);
    loop {
        let req = PageRequest { after: after.as_deref(), limit, newest_first, budget };
        let page = if dlq { store.dlq_page(filter, &req).await } else { store.runs_page(filter, &req).await }.unwrap();
        assert!(page.runs.len() <= limit);
        assert!(page.examined <= budget.max(limit), "a page examined {} entries", page.examined);
        ids.extend(page.runs.iter().map(|r| r.id));
        pages += 1;
        match page.next {
            Some(n) => after = Some(n),
            None => return (ids, pages),
        }
        assert!(pages < 10_000, "the listing does not end");
    }
}

#[tokio::test]
async fn pages_visit_every_run_once_in_order_even_when_many_share_a_millisecond() {
    let (_redis, store) = store().await;
    // 450 runs in three milliseconds: scores tie, order falls to the id.
    let mut created = Vec::new();
    for i in 0..450u64 {
        let id = RunId::new();
        store.create_run(id, &tagged(if i % 3 == 0 { "a" } else { "b" }), 1_000 + i / 150, 99_000).await.unwrap();
        created.push(id);
    }
    assert_eq!(store.runs_len().await.unwrap(), 450);
    let mut oldest_first = created.clone();
    oldest_first.sort_by_key(|id| (1_000 + created.iter().position(|c| c == id).unwrap() as u64 / 150, id.to_string()));

    let (ids, pages) = walk(&store, &RunFilter::default(), 100, false, 5_000, false).await;
    assert_eq!(ids, oldest_first);
    assert_eq!(pages, 5);
    let (ids, _) = walk(&store, &RunFilter::default(), 64, true, 5_000, false).await;
    assert_eq!(ids, oldest_first.iter().rev().copied().collect::<Vec<_>>());

    // A filter with a small budget hands back short pages, never more
    // entries examined than the budget, and finds every match.
    let only_a = RunFilter { metadata: vec![("batch".into(), "a".into())], ..RunFilter::default() };
    let (ids, pages) = walk(&store, &only_a, 20, false, 50, false).await;
    assert_eq!(ids.len(), 150);
    assert!(pages >= 9, "{pages} pages");
    assert!(ids.iter().all(|id| created.iter().position(|c| c == id).unwrap() % 3 == 0));

    // A time window: the second millisecond only, newest first.
    let window = RunFilter { since_ms: Some(1_001), until_ms: Some(1_002), ..RunFilter::default() };
    let (ids, _) = walk(&store, &window, 40, true, 5_000, false).await;
    assert_eq!(ids, oldest_first[150..300].iter().rev().copied().collect::<Vec<_>>());
    let (ids, _) = walk(&store, &window, 40, false, 5_000, false).await;
    assert_eq!(ids, oldest_first[150..300].to_vec());
}

#[tokio::test]
async fn a_cursor_whose_entry_left_the_index_goes_on_without_skipping_or_repeating() {
    let (_redis, store) = store().await;
    let mut dead = Vec::new();
    for i in 0..30u64 {
        let id = RunId::new();
        store.create_run(id, &tagged("x"), 10, 99_000).await.unwrap();
        let u = RunUpdate { last_error: Some("gave up".into()), ..RunUpdate::default() };
        // Ten runs each dead-lettered in the same millisecond.
        store.transition(&id, RunStatus::Accepted, RunStatus::Dead, 100 + i / 10, "gave up", &u).await.unwrap();
        dead.push(id);
    }
    let first =
        store.dlq_page(&RunFilter::default(), &PageRequest { limit: 7, ..PageRequest::default() }).await.unwrap();
    let shown: Vec<RunId> = first.runs.iter().map(|r| r.id).collect();
    // The operator requeues the last run shown before asking for more.
    store.dlq_requeue(shown.last().unwrap(), 200).await.unwrap();
    let (rest, _) = {
        let mut all = Vec::new();
        let mut after = first.next.clone();
        while let Some(a) = after {
            let p = store
                .dlq_page(&RunFilter::default(), &PageRequest { after: Some(&a), limit: 7, ..PageRequest::default() })
                .await
                .unwrap();
            all.extend(p.runs.iter().map(|r| r.id));
            after = p.next;
        }
        (all, ())
    };
    let mut seen: Vec<RunId> = shown.clone();
    seen.extend(&rest);
    assert_eq!(seen.len(), 30, "every run once");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 30);
    let full = store.dlq_list(&RunFilter::default()).await.unwrap();
    assert_eq!(full.len(), 29, "the requeued run left the set");
}

#[tokio::test]
async fn a_purged_run_leaves_the_run_index() {
    let (_redis, store) = store().await;
    let id = RunId::new();
    store.create_run(id, &tagged("x"), 10, 99_000).await.unwrap();
    store.transition(&id, RunStatus::Accepted, RunStatus::Rejected, 20, "bad", &RunUpdate::default()).await.unwrap();
    assert_eq!(store.runs_len().await.unwrap(), 1);
    assert_eq!(store.dlq_purge_ids(&[id]).await.unwrap(), 1);
    assert_eq!(store.runs_len().await.unwrap(), 0);
    let page = store.runs_page(&RunFilter::default(), &PageRequest::default()).await.unwrap();
    assert!(page.runs.is_empty() && page.next.is_none());
}
