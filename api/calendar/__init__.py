"""開館日カレンダー (branch calendars): which days a branch is open, and the yearly bulk entry of closed days."""
