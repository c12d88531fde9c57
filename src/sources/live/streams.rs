//! Which streams the collector subscribes to, and on which base: since
//! 2026-04-23 Binance routes the book streams to `/public` and the other market
//! streams to `/market` (`../shared/spec/binance.md`, WebSocket). The old
//! unrouted base answers `/market` subscriptions with silence, so it is never
//! used.

/// A stream kind the collector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
#[value(rename_all = "camelCase")]
pub enum StreamKind {
    /// `<s>@aggTrade`.
    AggTrade,
    /// `<s>@bookTicker`.
    BookTicker,
    /// `<s>@markPrice@1s`: mark, index, predicted funding; also the heartbeat
    /// that proves a `/market` connection is served.
    MarkPrice,
    /// `<s>@forceOrder`: liquidations.
    ForceOrder,
    /// `<s>@kline_1m`.
    Kline,
    /// `<s>@depth@100ms` (or the `--depth-speed` chosen).
    Depth,
}

/// A WebSocket base of the routed layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Base {
    /// `/public`: book streams.
    Public,
    /// `/market`: the other market streams.
    Market,
}

impl Base {
    /// The path under the WebSocket host.
    pub fn path(self) -> &'static str {
        match self {
            Base::Public => "/public",
            Base::Market => "/market",
        }
    }
}

impl StreamKind {
    /// Every kind, the default subscription.
    pub const ALL: [StreamKind; 6] = [
        StreamKind::AggTrade,
        StreamKind::BookTicker,
        StreamKind::MarkPrice,
        StreamKind::ForceOrder,
        StreamKind::Kline,
        StreamKind::Depth,
    ];

    /// The base that serves it.
    pub fn base(self) -> Base {
        match self {
            StreamKind::BookTicker | StreamKind::Depth => Base::Public,
            _ => Base::Market,
        }
    }

    /// The stream's name for `symbol`; `depth_speed` is `100ms`, `250ms` or `500ms`.
    pub fn stream(self, symbol: &str, depth_speed: &str) -> String {
        let s = symbol.to_lowercase();
        match self {
            StreamKind::AggTrade => format!("{s}@aggTrade"),
            StreamKind::BookTicker => format!("{s}@bookTicker"),
            StreamKind::MarkPrice => format!("{s}@markPrice@1s"),
            StreamKind::ForceOrder => format!("{s}@forceOrder"),
            StreamKind::Kline => format!("{s}@kline_1m"),
            StreamKind::Depth if depth_speed == "250ms" => format!("{s}@depth"),
            StreamKind::Depth => format!("{s}@depth@{depth_speed}"),
        }
    }
}

/// The streams of each connection: per base, the symbols' streams cut into
/// groups of at most `per_connection`.
pub fn groups(
    symbols: &[String],
    kinds: &[StreamKind],
    depth_speed: &str,
    per_connection: usize,
) -> Vec<(Base, Vec<String>)> {
    let mut out = Vec::new();
    for base in [Base::Public, Base::Market] {
        let streams: Vec<String> = symbols
            .iter()
            .flat_map(|s| {
                kinds
                    .iter()
                    .filter(move |k| k.base() == base)
                    .map(move |k| k.stream(s, depth_speed))
            })
            .collect();
        for chunk in streams.chunks(per_connection.max(1)) {
            out.push((base, chunk.to_vec()));
        }
    }
    out
}
