"""What a person sees of a stack: `flywheel status` (a live terminal view) and `flywheel report`
(a static HTML file). Gathering and rendering are separate modules so both views read the same
figures the same way:

  gathering: stackfile (which processes run), scrape (their Prometheus endpoints), history (the
             store's monitor windows, feedback latency, retrains), timeline (events), topics
             (model events and dead letters while a broker is up)
  rendering: terminal (rich), plots (matplotlib), html (the report page)
"""
