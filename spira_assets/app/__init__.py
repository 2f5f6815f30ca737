"""The application: materializing from the CLI (`runner`), the UI launcher (`ui`), runs
through a webserver (`webserver`), the local instance (`instance`), the demo summary
(`summary`) and sweep launching (`sweep_runs`)."""
