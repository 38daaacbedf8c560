"""What people look at: progress, the summary table, reports, plots and the target graph."""
