"""ClinLens: the installed ``clinlens`` command and ``python -m clinlens`` (see clinlens.command)."""
