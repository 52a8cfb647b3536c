//! Reading the proxies' `/metrics`: the text format (`parse`) and the arithmetic over two
//! readings (`reading`: rates, bucket growth, quantiles).

pub mod parse;
pub mod reading;
