// Parse .ics files with ical.js (the parser Thunderbird uses) and print what
// it read as JSON, one object per file in an array, so the Python tests can
// check that a strict third-party parser sees the same event we meant.
//
// Usage: node parse_ics.mjs FILE [FILE...]
// Exit status: 0 on success, 1 on any parse or interpretation error.
//
// Only the VTIMEZONE components inside each file are registered, never a
// bundled zone database: a DTSTART whose TZID has no VTIMEZONE in the file
// is reported as an error, so the UTC values printed prove that our
// VTIMEZONE definitions are correct (RFC 5545 section 3.6.5).
import { readFileSync } from "node:fs";
import ICAL from "ical.js";

const OCCURRENCES = 12;

function addressOf(prop) {
  if (!prop) {
    return null;
  }
  const value = String(prop.getFirstValue());
  return {
    email: value.replace(/^mailto:/i, ""),
    cn: prop.getParameter("cn") ?? null,
    role: prop.getParameter("role") ?? null,
    partstat: prop.getParameter("partstat") ?? null,
    rsvp: prop.getParameter("rsvp") ?? null,
  };
}

function timeInfo(component, name) {
  const prop = component.getFirstProperty(name);
  if (!prop) {
    return null;
  }
  const tzid = prop.getParameter("tzid") ?? null;
  if (tzid && !ICAL.TimezoneService.has(tzid)) {
    throw new Error(`${name} uses TZID ${tzid} without a VTIMEZONE`);
  }
  const time = prop.getFirstValue();
  return {
    isDate: time.isDate,
    tzid,
    local: time.toString(),
    utc: time.isDate ? null : time.convertToZone(ICAL.Timezone.utcTimezone).toString(),
  };
}

function occurrences(event) {
  const out = [];
  const iterator = event.iterator();
  for (let next = iterator.next(); next && out.length < OCCURRENCES; next = iterator.next()) {
    out.push(next.isDate ? next.toString() : next.convertToZone(ICAL.Timezone.utcTimezone).toString());
  }
  return out;
}

function describeEvent(vevent) {
  const event = new ICAL.Event(vevent);
  const rrule = vevent.getFirstPropertyValue("rrule");
  return {
    uid: event.uid,
    sequence: event.sequence,
    summary: event.summary,
    description: event.description,
    location: event.location,
    status: vevent.getFirstPropertyValue("status"),
    url: vevent.getFirstPropertyValue("url"),
    dtstamp: timeInfo(vevent, "dtstamp"),
    start: timeInfo(vevent, "dtstart"),
    end: timeInfo(vevent, "dtend"),
    rrule: rrule ? rrule.toString() : null,
    occurrences: occurrences(event),
    organizer: addressOf(vevent.getFirstProperty("organizer")),
    attendees: vevent.getAllProperties("attendee").map(addressOf),
  };
}

function describeFile(path) {
  const text = readFileSync(path, "utf8");
  const vcalendar = new ICAL.Component(ICAL.parse(text));
  if (vcalendar.name !== "vcalendar") {
    throw new Error(`top-level component is ${vcalendar.name}`);
  }
  ICAL.TimezoneService.reset();
  const timezones = vcalendar.getAllSubcomponents("vtimezone");
  for (const vtimezone of timezones) {
    ICAL.TimezoneService.register(vtimezone);
  }
  return {
    file: path,
    method: vcalendar.getFirstPropertyValue("method"),
    version: vcalendar.getFirstPropertyValue("version"),
    prodid: vcalendar.getFirstPropertyValue("prodid"),
    calscale: vcalendar.getFirstPropertyValue("calscale"),
    timezones: timezones.map((tz) => tz.getFirstPropertyValue("tzid")),
    events: vcalendar.getAllSubcomponents("vevent").map(describeEvent),
  };
}

try {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    throw new Error("usage: node parse_ics.mjs FILE [FILE...]");
  }
  process.stdout.write(JSON.stringify(files.map(describeFile), null, 2) + "\n");
} catch (error) {
  process.stderr.write(`parse_ics: ${error.message}\n`);
  process.exit(1);
}
