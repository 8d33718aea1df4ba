// Shared by build.rs and emu/build.rs (each `include!`s this file): how a
// kernel source names its entry points.

/// Entry points of a kernel source: every line `KERNEL void [__launch_bounds__(..)] name(`.
fn kernel_names(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in src.lines() {
        let Some(rest) = line.trim_start().strip_prefix("KERNEL ") else {
            continue;
        };
        let mut rest = rest.trim_start();
        rest = rest.strip_prefix("void").unwrap_or(rest).trim_start();
        if let Some(after) = rest.strip_prefix("__launch_bounds__(") {
            rest = after
                .split_once(')')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            names.push(name);
        }
    }
    names
}
