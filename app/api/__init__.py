"""HTTP routers. ``app.main.ROUTERS`` lists the ones the app includes."""
