//! Plain-text tables as `kubectl get` prints them: a header row in capitals, columns padded to their widest
//! cell and separated by three spaces, no trailing spaces.

/// Rows of cells under `header`, aligned.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    std::iter::once(&header).chain(rows).map(|row| line(row, &widths)).collect()
}

fn line(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        out.push_str(cell);
        if i + 1 < cells.len() {
            let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count()) + 3;
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_under_their_header() {
        let rows = vec![vec!["web-1.shop".to_string(), "SYNCED".to_string()], vec!["a.b".into(), "".into()]];
        assert_eq!(render(&["NAME", "CDS"], &rows), "NAME         CDS\nweb-1.shop   SYNCED\na.b\n");
    }
}
