//! Runs SQL on a Ballista cluster from Rust.
//!
//! ```text
//! cargo run -p ballista-example-remote-sql -- http://localhost:50050 /data/tpch/lineitem/ \
//!     "SELECT l_returnflag, count(*) FROM t GROUP BY l_returnflag"
//! ```
//!
//! The session is an ordinary DataFusion `SessionContext`: tables are
//! registered and queries planned locally, then executed on the cluster.

use ballista::client::SessionContextExt;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

#[tokio::main]
async fn main() -> datafusion::error::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [scheduler, table_path, sql] = args.as_slice() else {
        eprintln!("usage: remote-sql <scheduler-url> <parquet-folder> <sql over table t>");
        std::process::exit(2);
    };

    let ctx = SessionContext::remote(scheduler).await?;
    ctx.register_parquet("t", table_path, ParquetReadOptions::default())
        .await?;

    // SQL and the DataFrame API both run on the cluster.
    ctx.sql(sql).await?.show().await?;
    let rows = ctx.table("t").await?.count().await?;
    println!("t has {rows} rows");
    Ok(())
}
