//! `fault` as the route's configuration of Envoy's fault filter (`typed_per_filter_config`).

use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{FaultDelay, fault_delay};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{FaultAbort, HttpFault, fault_abort};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use weft_crds::duration::parse_duration;
use weft_crds::virtual_service::actions::grpc_status_code;
use weft_crds::virtual_service::{HttpFaultInjection, Percent};

use super::super::duration;

pub(super) fn http_fault(fault: &HttpFaultInjection) -> HttpFault {
    let delay = fault.delay.as_ref().and_then(|delay| {
        let fixed = parse_duration(delay.fixed_delay.as_deref()?).ok()?;
        // `percentage` wins over the deprecated integer `percent`, as in Istio.
        let share = delay.percentage.map(|p| p.value).or(delay.percent.map(f64::from));
        Some(FaultDelay {
            percentage: Some(fraction(share.unwrap_or(100.0))),
            fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(duration(fixed))),
        })
    });
    let abort = fault.abort.as_ref().and_then(|abort| {
        let error_type = match (abort.http_status, abort.grpc_status.as_deref()) {
            (Some(status), _) => fault_abort::ErrorType::HttpStatus(u32::try_from(status).ok()?),
            (None, Some(name)) => fault_abort::ErrorType::GrpcStatus(grpc_status_code(name)?),
            (None, None) => return None,
        };
        Some(FaultAbort {
            percentage: Some(fraction(abort.percentage.map_or(100.0, |p: Percent| p.value))),
            error_type: Some(error_type),
            ..Default::default()
        })
    });
    HttpFault { delay, abort, ..Default::default() }
}

/// A percentage (0-100, fractions allowed) as parts per million, Envoy's finest denominator.
pub(super) fn fraction(percent: f64) -> FractionalPercent {
    // Validation keeps `percent` in 0..=100, so the product fits (and `as` saturates regardless).
    let numerator = (percent * 10_000.0).round() as u32;
    FractionalPercent { numerator, denominator: DenominatorType::Million as i32 }
}
