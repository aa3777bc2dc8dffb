//! CSV exports for admins over plain HTTP, with the same bearer JWT as GraphQL:
//! `GET /admin/export/report.csv?from=YYYY-MM-DD&to=YYYY-MM-DD` (the report's figures, one row
//! per figure, breakdown line and bucket) and `GET /admin/export/ledger.csv?from=&to=` (every
//! ledger row of the period). The ledger is streamed page by page (by id), so an export of
//! millions of rows holds one page in memory. UTF-8, RFC 4180 quoting (the `csv` crate), a header
//! row, `Content-Disposition: attachment`. 401 without a valid token, 403 for a non-admin.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use loyalty_domain::report::export::ExportRange;
use loyalty_domain::report::{Granularity, LoyaltyReport, PointsFigure, ReportRequest};
use loyalty_domain::{AdminActor, DomainError, Points};
use serde::Deserialize;

use super::errors::{domain_refusal, request_id_of};
use super::AppState;

mod cell;

use cell::Cell;

/// Ledger rows per database round trip (and per chunk of the response body).
const PAGE_ROWS: u64 = 1_000;

#[derive(Deserialize)]
pub struct Period {
    from: Option<String>,
    to: Option<String>,
}

/// The admin behind the request, or the response refusing it.
fn admin(state: &AppState, headers: &HeaderMap) -> Result<AdminActor, DomainError> {
    let actor = match state.auth.actor_from_headers(headers) {
        Ok(Some(actor)) => actor,
        Ok(None) => {
            return Err(DomainError::Unauthenticated(
                "a bearer token is required".into(),
            ))
        }
        Err(err) => return Err(DomainError::Unauthenticated(err.to_string())),
    };
    actor
        .as_admin()
        .map_err(|_| DomainError::Forbidden("exports need an admin token".into()))
}

fn dates(period: &Period) -> Result<(NaiveDate, NaiveDate), DomainError> {
    let parse = |value: &Option<String>, name: &str| {
        value
            .as_deref()
            .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
            .ok_or_else(|| DomainError::validation(format!("`{name}` must be a YYYY-MM-DD date")))
    };
    Ok((parse(&period.from, "from")?, parse(&period.to, "to")?))
}

fn csv_response(filename: &str, body: Body) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn safe_name(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

type Line = [Cell; 6];

fn figure_lines(lines: &mut Vec<Line>, section: &str, figure: &PointsFigure) {
    lines.push([
        Cell::text("summary"),
        Cell::text(section),
        Cell::empty(),
        Cell::number(figure.total),
        Cell::number(figure.count),
        Cell::empty(),
    ]);
    for part in &figure.parts {
        lines.push([
            Cell::text(section),
            Cell::text(part.key.as_str()),
            Cell::text(part.label.as_str()),
            Cell::number(part.points),
            Cell::number(part.count),
            Cell::number(part.share),
        ]);
    }
}

fn report_lines(report: &LoyaltyReport) -> Vec<Line> {
    let f = &report.figures;
    let mut lines: Vec<Line> = Vec::new();
    let mut summary = |key: &str, value: Cell| {
        lines.push([
            Cell::text("summary"),
            Cell::text(key),
            Cell::empty(),
            value,
            Cell::empty(),
            Cell::empty(),
        ])
    };
    summary("from", Cell::number(f.from));
    summary("to", Cell::number(f.to));
    summary("timezone", Cell::text(report.timezone.as_str()));
    summary("currency", Cell::text(report.currency.as_str()));
    summary("as_of", Cell::instant(report.as_of));
    summary("points_expired", Cell::number(f.expired));
    summary("outstanding_balance", Cell::number(f.outstanding));
    summary("redemption_rate", Cell::number(f.redemption_rate));
    summary("members_total", Cell::number(f.members.total));
    summary("members_new", Cell::number(f.members.new));
    summary("members_active", Cell::number(f.members.active));
    summary("revenue", Cell::number(f.revenue.decimal()));
    summary(
        "average_order_value",
        Cell::number(f.average_order_value.decimal()),
    );
    let (a, c, d, v) = (
        f.acquisition,
        f.coverage,
        f.average_discount,
        f.order_values,
    );
    summary("acquisition_new_members", Cell::number(a.new_members));
    summary("acquisition_with_purchase", Cell::number(a.with_purchase));
    summary(
        "acquisition_without_purchase",
        Cell::number(a.without_purchase),
    );
    summary("coverage_member_orders", Cell::number(c.member_orders));
    summary(
        "coverage_non_member_orders",
        Cell::number(c.non_member_orders),
    );
    summary("coverage_order_share", Cell::number(c.order_share));
    summary(
        "coverage_member_revenue",
        Cell::number(c.member_revenue.decimal()),
    );
    summary(
        "coverage_non_member_revenue",
        Cell::number(c.non_member_revenue.decimal()),
    );
    summary("coverage_revenue_share", Cell::number(c.revenue_share));
    summary("discount_total", Cell::number(d.total.decimal()));
    summary(
        "discount_from_points",
        Cell::number(d.from_points.decimal()),
    );
    summary(
        "discount_from_prizes",
        Cell::number(d.from_prizes.decimal()),
    );
    summary("discount_vouchers", Cell::number(d.vouchers));
    summary("discount_rate", Cell::number(d.rate));
    summary(
        "average_order_value_members",
        Cell::number(v.members.decimal()),
    );
    summary(
        "average_order_value_non_members",
        Cell::number(v.non_members.decimal()),
    );
    summary(
        "average_order_value_everyone",
        Cell::number(v.everyone.decimal()),
    );
    summary("purchasers", Cell::number(f.purchasers));
    summary("purchase_rate", Cell::number(f.purchase_rate));
    figure_lines(&mut lines, "points_issued", &f.issued);
    figure_lines(&mut lines, "points_used", &f.used);
    let mut line = |section: &str, key: Cell, label: Cell, value: Cell, count: Cell| {
        lines.push([Cell::text(section), key, label, value, count, Cell::empty()])
    };
    for month in &f.activity_by_month {
        line(
            "activity_by_month",
            Cell::number(month.start),
            Cell::empty(),
            Cell::number(month.revenue.decimal()),
            Cell::number(month.orders),
        );
        line(
            "activity_last_purchase",
            Cell::number(month.start),
            Cell::empty(),
            Cell::empty(),
            Cell::number(month.last_purchase_members),
        );
    }
    for bucket in &f.membership_duration {
        let key = || Cell::number(u64::from(bucket.min_months));
        let label = || Cell::text(bucket.label.as_str());
        line(
            "membership_duration",
            key(),
            label(),
            Cell::number(bucket.revenue.decimal()),
            Cell::number(bucket.members),
        );
        line(
            "membership_duration_orders",
            key(),
            label(),
            Cell::number(bucket.average_purchase.decimal()),
            Cell::number(bucket.orders),
        );
    }
    for campaign in &f.campaigns {
        let key = || Cell::number(campaign.rule_id);
        let label = || Cell::text(campaign.name.as_str());
        line(
            "campaign",
            key(),
            label(),
            Cell::number(campaign.points_issued),
            Cell::number(campaign.awards),
        );
        line(
            "campaign_reached",
            key(),
            label(),
            Cell::empty(),
            Cell::number(campaign.members_reached),
        );
        line(
            "campaign_budget_spent",
            key(),
            label(),
            Cell::number(campaign.budget_spent),
            Cell::empty(),
        );
        line(
            "campaign_budget_remaining",
            key(),
            label(),
            campaign
                .budget_remaining
                .map_or_else(Cell::empty, Cell::number),
            Cell::empty(),
        );
    }
    for tier in &report.tiers {
        let (id, name) = match &tier.tier {
            Some((id, name)) => (Cell::number(*id), Cell::text(name.as_str())),
            None => (Cell::empty(), Cell::text("No tier")),
        };
        lines.push([
            Cell::text("tier"),
            id,
            name,
            Cell::empty(),
            Cell::number(tier.count),
            Cell::empty(),
        ]);
    }
    for bucket in &report.series {
        for (name, value) in [
            ("issued", Cell::number(bucket.issued)),
            ("used", Cell::number(bucket.used)),
            ("expired", Cell::number(bucket.expired)),
            ("new_members", Cell::number(bucket.new_members)),
            (
                "new_members_with_purchase",
                Cell::number(bucket.new_members_with_purchase),
            ),
            ("member_orders", Cell::number(bucket.member_orders)),
            (
                "member_revenue",
                Cell::number(bucket.member_revenue.decimal()),
            ),
            ("non_member_orders", Cell::number(bucket.non_member_orders)),
            (
                "non_member_revenue",
                Cell::number(bucket.non_member_revenue.decimal()),
            ),
            ("discount", Cell::number(bucket.discount.decimal())),
        ] {
            lines.push([
                Cell::text(format!("series_{name}")),
                Cell::number(bucket.start),
                Cell::empty(),
                value,
                Cell::empty(),
                Cell::empty(),
            ]);
        }
    }
    lines
}

/// Every cell of every export passes through here, and so through [`Cell::into_field`].
fn write_csv<I: IntoIterator<Item = R>, R: IntoIterator<Item = Cell>>(
    rows: I,
) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.write_record(row.into_iter().map(Cell::into_field))?;
    }
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
}

/// `GET /admin/export/report.csv`: the report of a period (DAY series), one line per figure.
pub async fn report_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(period): Query<Period>,
) -> Response {
    let (actor, (from, to)) = match admin(&state, &headers).and_then(|a| Ok((a, dates(&period)?))) {
        Ok(found) => found,
        Err(err) => return domain_refusal(request_id_of(&headers), err),
    };
    let loyalty = &state.loyalty;
    let report = async {
        let program = loyalty.program(&actor.program).await?;
        let report = loyalty
            .loyalty_report(
                &program,
                ReportRequest {
                    from,
                    to,
                    granularity: Granularity::Day,
                    compare: None,
                },
            )
            .await?;
        Ok::<_, DomainError>((program, report))
    };
    let (program, report) = match report.await {
        Ok(done) => done,
        Err(err) => return domain_refusal(request_id_of(&headers), err),
    };
    let header = ["section", "key", "label", "value", "count", "share"].map(Cell::text);
    match write_csv(std::iter::once(header).chain(report_lines(&report))) {
        Ok(bytes) => csv_response(
            &format!("report-{}-{from}-{to}.csv", safe_name(&program.external_id)),
            Body::from(bytes),
        ),
        Err(err) => domain_refusal(request_id_of(&headers), DomainError::internal(err)),
    }
}

const LEDGER_HEADER: [&str; 14] = [
    "id",
    "created_at",
    "local_date",
    "member_id",
    "member_external_id",
    "member_name",
    "account",
    "kind",
    "amount",
    "source",
    "purpose",
    "ref_type",
    "ref_id",
    "note",
];

fn ledger_page(
    range: &ExportRange,
    rows: Vec<loyalty_domain::report::export::ExportRow>,
) -> Result<Vec<u8>, csv::Error> {
    write_csv(rows.into_iter().map(|r| {
        [
            Cell::number(r.id),
            Cell::instant(r.created_at),
            Cell::number(r.created_at.with_timezone(&range.tz).date_naive()),
            Cell::number(r.member_id),
            Cell::text(r.member_external_id),
            Cell::text(r.member_display_name.unwrap_or_default()),
            Cell::text(r.account),
            Cell::text(r.kind),
            Cell::number(Points::from_minor(r.amount_minor)),
            Cell::text(r.source.unwrap_or_default()),
            Cell::text(r.purpose.unwrap_or_default()),
            Cell::text(r.ref_type.unwrap_or_default()),
            Cell::text(r.ref_id.unwrap_or_default()),
            Cell::text(r.note.unwrap_or_default()),
        ]
    }))
}

/// `GET /admin/export/ledger.csv`: every ledger row of the period, streamed by id.
pub async fn ledger_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(period): Query<Period>,
) -> Response {
    let (actor, (from, to)) = match admin(&state, &headers).and_then(|a| Ok((a, dates(&period)?))) {
        Ok(found) => found,
        Err(err) => return domain_refusal(request_id_of(&headers), err),
    };
    let loyalty = state.loyalty.clone();
    let range = async {
        let program = loyalty.program(&actor.program).await?;
        let range = loyalty.ledger_export_range(&program, from, to).await?;
        Ok::<_, DomainError>((program, range))
    };
    let (program, range) = match range.await {
        Ok(done) => done,
        Err(err) => return domain_refusal(request_id_of(&headers), err),
    };
    let header = match write_csv([LEDGER_HEADER.map(Cell::text)]) {
        Ok(bytes) => bytes,
        Err(err) => return domain_refusal(request_id_of(&headers), DomainError::internal(err)),
    };
    // State: the last id sent, or None when done.
    let pages = futures::stream::unfold(Some(0i64), move |after| {
        let (loyalty, range) = (loyalty.clone(), range.clone());
        async move {
            let after = after?;
            let rows = match loyalty.ledger_export_page(&range, after, PAGE_ROWS).await {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::error!(error = %err, "ledger export page failed");
                    return Some((Err(std::io::Error::other("export failed")), None));
                }
            };
            let last = rows.last()?.id;
            let next = (rows.len() as u64 == PAGE_ROWS).then_some(last);
            Some((
                ledger_page(&range, rows)
                    .map(Bytes::from)
                    .map_err(std::io::Error::other),
                next,
            ))
        }
    });
    let body = futures::StreamExt::chain(
        futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(header)) }),
        pages,
    );
    csv_response(
        &format!("ledger-{}-{from}-{to}.csv", safe_name(&program.external_id)),
        Body::from_stream(body),
    )
}
