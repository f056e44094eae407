//! Ingest from the real PostgreSQL server at 127.0.0.1:5432 (database `test`).

use postgres::{Client, NoTls};

use crate::common::*;

fn url() -> String {
    std::env::var("SGML_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Drops the schema even when the test fails.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&url(), NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
        }
    }
}

#[test]
fn ingest_from_postgres_streams_contract_tables() {
    let mut db = Client::connect(&url(), NoTls)
        .expect("PostgreSQL at 127.0.0.1:5432 (scripts/test starts it)");
    let schema = Schema(format!("sgml_e2e_{}", std::process::id()));
    let s = &schema.0;
    db.batch_execute(&format!(
        "CREATE SCHEMA {s};
         CREATE TABLE {s}.orders (
            order_id text, line_no integer, order_ts timestamptz, customer_id bigint,
            customer_name text, customer_email text, product_id text, seller_id text,
            quantity integer, unit_price numeric(12,2), currency text, buyer_country text,
            ship_country text, channel text, status text);
         CREATE TABLE {s}.products (
            product_id text, seller_id text, seller_country text, title text, category text,
            brand text, condition text, list_price numeric, currency text);
         CREATE TABLE {s}.deletion_requests (customer_id bigint, requested_ts timestamptz);"
    ))
    .unwrap();
    // Good rows, spread over time zones, plus one bad row per kind.
    db.batch_execute(&format!(
        "INSERT INTO {s}.orders VALUES
          ('A1', 1, '2024-05-01 10:00:00+00', 1001, 'Ada Lovelace', 'ada@example.com', 'P1', 'S1', 2, 19.99, 'EUR', 'DE', 'DE', 'web', 'completed'),
          ('A1', 2, '2024-05-01 10:00:00+00', 1001, 'Ada Lovelace', 'ada@example.com', 'P2', 'S1', 1, 5.00, 'EUR', 'DE', 'FR', 'web', 'completed'),
          ('A2', 1, '2024-05-02 23:30:00-05', 1002, 'Alan Turing', 'alan@example.com', 'P1', 'S1', 1, 21.50, 'EUR', 'FR', 'FR', 'app', 'returned'),
          ('A3', 1, '2024-05-03 08:00:00+00', 1003, 'Grace Hopper', 'grace@example.com', 'P2', 'S1', 1, -3.00, 'EUR', 'DE', 'DE', 'web', 'completed'),
          ('A4', 1, '2024-05-03 09:00:00+00', 1003, 'Grace Hopper', 'grace@example.com', 'P2', 'S1', 1, 3.00, 'EUX', 'DE', 'DE', 'web', 'completed'),
          (NULL, 1, '2024-05-03 09:00:00+00', 1004, 'Edsger D', 'ed@example.com', 'P2', 'S1', 1, 3.00, 'EUR', 'DE', 'DE', 'web', 'completed'),
          ('A1', 1, '2024-05-01 10:00:00+00', 1001, 'Ada Lovelace', 'ada@example.com', 'P1', 'S1', 2, 19.99, 'EUR', 'DE', 'DE', 'web', 'completed');
         INSERT INTO {s}.products VALUES
          ('P1', 'S1', 'DE', 'Kabellose Kopfhörer Schwarz', 'Electronics', 'Sonex', 'new', 99.0, 'EUR'),
          ('P2', 'S1', 'DE', 'Yogamatte Blau', 'Sports', 'Peak', 'used', 30.0, 'EUR'),
          ('P3', 'S1', 'DE', NULL, 'Sports', 'Peak', 'new', 30.0, 'EUR');
         INSERT INTO {s}.deletion_requests VALUES (1002, '2024-05-04 00:00:00+00');"
    ))
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // A deliberately bad fixture: 4 of its 7 order rows break the contract, above
    // the default reject limit.
    let out = ok(sgml(&store).env("SGML_ANON_KEY", TEST_KEY).args([
        "ingest",
        "--max-reject-share",
        "0.6",
        "--pg-schema",
        s,
        "--input",
        &url(),
    ]));
    let m = last_manifest(&store, "ingest");
    assert_eq!(m["run_date"], "2024-05-03", "{out}");
    let c = |t: &str, f: &str| m["counts"][t][f].as_u64().unwrap();
    assert_eq!(
        (
            c("orders", "rows_in"),
            c("orders", "accepted"),
            c("orders", "quarantined")
        ),
        (7, 3, 4)
    );
    assert_eq!(
        (c("products", "rows_in"), c("products", "accepted")),
        (3, 2)
    );
    assert_eq!(c("deletion_requests", "accepted"), 1);
    assert!(
        m["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["uri"].as_str().unwrap().starts_with("postgres://"))
    );

    let run_id = m["run_id"].as_str().unwrap();
    let rejects = read_partition(&store.join(format!("quarantine/orders/{run_id}")));
    let mut rules = strings(&rejects, "_rule");
    rules.sort();
    assert_eq!(
        rules,
        [
            "orders.currency.currency",
            "orders.key.duplicate",
            "orders.order_id.required",
            "orders.unit_price.range"
        ]
    );

    // The -05:00 order is stored in UTC; the customer with a deletion request got an unlinked key.
    let orders = read_parquet(&store.join("raw/orders/dt=2024-05-03/part-00000.parquet"));
    let keys = strings(&orders, "customer_key");
    let key_of = |id: &str| {
        sgml_features::anonymize::AnonKey::new(TEST_KEY)
            .unwrap()
            .customer_key(id)
    };
    assert!(keys.contains(&key_of("1001")));
    assert!(
        !keys.contains(&key_of("1002")),
        "deleted customer re-linked"
    );
    assert_eq!(keys.len(), 3);
    let ts = orders
        .column("order_ts")
        .unwrap()
        .cast(&polars::prelude::DataType::String)
        .unwrap();
    assert!(
        ts.str()
            .unwrap()
            .iter()
            .flatten()
            .any(|t| t.starts_with("2024-05-03 04:30:00")),
        "{ts:?}"
    );
}
