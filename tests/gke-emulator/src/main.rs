//! `qhub-gke-emulator [--port N] [--token T] [--min-polls N] [--time-scale F]`: the GKE
//! emulator as a process on `127.0.0.1`, for trying qhub against it by hand
//! (`QHUB_GKE_ENDPOINT=http://127.0.0.1:N`).

use qhub_gke_emulator::{GkeEmulator, Options};

fn usage() -> ! {
    eprintln!(
        "usage: qhub-gke-emulator [--port N] [--token TOKEN] [--min-polls N] [--time-scale F]"
    );
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let mut options = Options::default();
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--port" => port = value().parse().unwrap_or_else(|_| usage()),
            "--token" => options.token = Some(value()),
            "--min-polls" => options.min_polls = value().parse().unwrap_or_else(|_| usage()),
            "--time-scale" => options.time_scale = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let emulator = match GkeEmulator::start_on(port, options).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("qhub-gke-emulator: cannot listen: {e}");
            std::process::exit(1);
        }
    };
    println!("GKE emulator listening on {}", emulator.endpoint());
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
