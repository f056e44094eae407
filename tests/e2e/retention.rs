use std::collections::HashSet;

use chrono::{Duration, NaiveDate};

use crate::common::*;

fn offer_ids(df: &polars::prelude::DataFrame) -> HashSet<String> {
    strings(df, "offer_id").into_iter().collect()
}

/// Retention on generated data: exactly the rows crawled more than 60 days before
/// the run date move, and none is lost.
#[test]
fn retention_moves_exactly_the_old_crawled_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 800, 21, 0.0);
    let store = dir.path().join("store");
    ok(sgml(&store)
        .args(["ingest", "--demo", "--input"])
        .arg(&input));
    let run_date = ingested_run_date(&store);
    let raw_key = store.join(format!(
        "raw/crawled_offers/dt={run_date}/part-00000.parquet"
    ));
    let before = read_parquet(&raw_key);
    ok(sgml(&store).args(["retention", "--run-date", &run_date]));
    let kept = read_parquet(&raw_key);
    let archived =
        read_parquet(&store.join(format!("archive/crawled/dt={run_date}/part-0.parquet")));
    assert!(kept.height() > 0 && archived.height() > 0);
    assert_eq!(
        kept.height() + archived.height(),
        before.height(),
        "no row lost or doubled"
    );
    let all: HashSet<String> = offer_ids(&kept)
        .union(&offer_ids(&archived))
        .cloned()
        .collect();
    assert_eq!(all, offer_ids(&before));

    let cutoff = NaiveDate::parse_from_str(&run_date, "%Y-%m-%d").unwrap() - Duration::days(60);
    let dates = |df: &polars::prelude::DataFrame| -> Vec<NaiveDate> {
        let s = df
            .column("crawled_ts")
            .unwrap()
            .cast(&polars::prelude::DataType::String)
            .unwrap();
        s.str()
            .unwrap()
            .iter()
            .flatten()
            .map(|t| NaiveDate::parse_from_str(&t[..10], "%Y-%m-%d").unwrap())
            .collect()
    };
    assert!(dates(&archived).iter().all(|d| *d < cutoff));
    assert!(dates(&kept).iter().all(|d| *d >= cutoff));

    // A second run moves nothing more and keeps the archive as it is.
    ok(sgml(&store).args(["retention", "--run-date", &run_date]));
    assert_eq!(read_parquet(&raw_key).height(), kept.height());
    assert_eq!(
        read_parquet(&store.join(format!("archive/crawled/dt={run_date}/part-0.parquet"))).height(),
        archived.height()
    );
}

/// The 60-day boundary, and deletion requests that arrive after the orders.
#[test]
fn boundary_day_stays_and_deleted_customers_are_unlinked() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("export");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(
        input.join("crawled_offers.csv"),
        "offer_id,source,product_ref,title,price,currency,country,crawled_ts\n\
         X59,idealo,P1,Mug,5.0,EUR,DE,2024-05-02 23:59:59\n\
         X60,idealo,P1,Mug,5.0,EUR,DE,2024-05-01 00:00:00\n\
         X61,idealo,P1,Mug,5.0,EUR,DE,2024-04-30 23:59:59\n\
         X200,idealo,,Mug,5.0,EUR,DE,2023-12-13 08:00:00\n",
    )
    .unwrap();
    std::fs::write(
        input.join("orders.csv"),
        "order_id,line_no,order_ts,customer_id,product_id,seller_id,quantity,unit_price,currency,buyer_country,ship_country,channel,status\n\
         O1,1,2024-06-01 10:00:00,C1,P1,S1,1,5.0,EUR,DE,DE,web,completed\n\
         O2,1,2024-06-02 10:00:00,C1,P1,S1,2,5.0,EUR,DE,AT,web,completed\n\
         O3,1,2024-06-03 10:00:00,C2,P1,S1,1,5.5,EUR,FR,FR,app,completed\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    let sgml_key = |store: &std::path::Path| {
        let mut c = sgml(store);
        c.env("SGML_ANON_KEY", TEST_KEY);
        c
    };
    ok(sgml_key(&store)
        .args(["ingest", "--run-date", "2024-06-30", "--input"])
        .arg(&input));
    ok(sgml_key(&store).args(["features", "--run-date", "2024-06-30"]));

    // The deletion request arrives later, in its own export.
    let later = dir.path().join("later");
    std::fs::create_dir_all(&later).unwrap();
    std::fs::write(
        later.join("deletion_requests.csv"),
        "customer_id,requested_ts\nC1,2024-06-29 12:00:00\n",
    )
    .unwrap();
    ok(sgml_key(&store)
        .args(["ingest", "--run-date", "2024-06-30", "--input"])
        .arg(&later));
    assert!(
        store
            .join("raw/orders/dt=2024-06-30/part-00000.parquet")
            .exists(),
        "ingesting one table leaves the others"
    );
    ok(sgml(&store).args(["retention", "--run-date", "2024-06-30"]));

    let kept = offer_ids(&read_parquet(
        &store.join("raw/crawled_offers/dt=2024-06-30/part-00000.parquet"),
    ));
    let archived = offer_ids(&read_parquet(
        &store.join("archive/crawled/dt=2024-06-30/part-0.parquet"),
    ));
    assert_eq!(
        kept,
        HashSet::from(["X59".to_string(), "X60".to_string()]),
        "exactly 60 days stays"
    );
    assert_eq!(
        archived,
        HashSet::from(["X61".to_string(), "X200".to_string()])
    );

    let old_key = sgml_features::anonymize::AnonKey::new(TEST_KEY)
        .unwrap()
        .customer_key("C1");
    let c2 = sgml_features::anonymize::AnonKey::new(TEST_KEY)
        .unwrap()
        .customer_key("C2");
    for table in ["raw/orders", "features/order_lines", "features/customers"] {
        let df = read_partition(&store.join(format!("{table}/dt=2024-06-30")));
        let keys = strings(&df, "customer_key");
        assert!(
            !keys.contains(&old_key),
            "{table} still links the deleted customer"
        );
        assert!(keys.contains(&c2), "{table} lost other customers");
    }
    let orders = read_parquet(&store.join("raw/orders/dt=2024-06-30/part-00000.parquet"));
    let keys = strings(&orders, "customer_key");
    assert_eq!(keys.len(), 3, "orders kept as anonymous data");
    assert_eq!(keys[0], keys[1], "one random key per deleted customer");
}
