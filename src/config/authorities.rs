//! The built-in directory of the German supervisory authorities: the
//! values `incidents.authority` chooses from (checked at load time), and
//! the addresses the Art. 33 draft ([`crate::incident::report`]) names.

/// A supervisory authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authority {
    /// `incidents.authority` code: the Land's ISO 3166-2:DE suffix, `BUND`
    /// for the federal authority, `BY-PUBLIC` for Bavaria's public bodies.
    pub code: &'static str,
    /// Name.
    pub name: &'static str,
    /// Postal address, lines separated by `\n`.
    pub postal: &'static str,
    /// E-mail address of the general mailbox.
    pub email: &'static str,
    /// Website.
    pub web: &'static str,
}

/// When the directory was compiled: from each authority's published
/// contact page, cross-checked with the open directory of the
/// datenanfragen.de project. Addresses change; verify before sending.
pub const DIRECTORY_DATE: &str = "2026-11-22";

const fn a(
    code: &'static str,
    name: &'static str,
    postal: &'static str,
    email: &'static str,
    web: &'static str,
) -> Authority {
    Authority {
        code,
        name,
        postal,
        email,
        web,
    }
}

/// The 16 Länder authorities, Bavaria's second one for public bodies, and
/// the federal authority.
pub const AUTHORITIES: [Authority; 18] = [
    a(
        "BW",
        "Der Landesbeauftragte für den Datenschutz und die Informationsfreiheit Baden-Württemberg",
        "Postfach 10 29 32\n70025 Stuttgart",
        "poststelle@lfdi.bwl.de",
        "https://www.baden-wuerttemberg.datenschutz.de",
    ),
    a(
        "BY",
        "Bayerisches Landesamt für Datenschutzaufsicht (BayLDA), for non-public bodies",
        "Promenade 18\n91522 Ansbach",
        "poststelle@lda.bayern.de",
        "https://www.lda.bayern.de",
    ),
    a(
        "BY-PUBLIC",
        "Der Bayerische Landesbeauftragte für den Datenschutz (BayLfD), for Bavarian public bodies",
        "Postfach 22 12 19\n80502 München",
        "poststelle@datenschutz-bayern.de",
        "https://www.datenschutz-bayern.de",
    ),
    a(
        "BE",
        "Berliner Beauftragte für Datenschutz und Informationsfreiheit",
        "Alt-Moabit 59-61\n10555 Berlin",
        "mailbox@datenschutz-berlin.de",
        "https://www.datenschutz-berlin.de",
    ),
    a(
        "BB",
        "Die Landesbeauftragte für den Datenschutz und für das Recht auf Akteneinsicht Brandenburg",
        "Stahnsdorfer Damm 77\n14532 Kleinmachnow",
        "poststelle@lda.brandenburg.de",
        "https://www.lda.brandenburg.de",
    ),
    a(
        "HB",
        "Die Landesbeauftragte für Datenschutz und Informationsfreiheit der Freien Hansestadt Bremen",
        "Arndtstraße 1\n27570 Bremerhaven",
        "office@datenschutz.bremen.de",
        "https://www.datenschutz.bremen.de",
    ),
    a(
        "HH",
        "Der Hamburgische Beauftragte für Datenschutz und Informationsfreiheit",
        "Kurt-Schumacher-Allee 4\n20097 Hamburg",
        "mailbox@datenschutz.hamburg.de",
        "https://datenschutz-hamburg.de",
    ),
    a(
        "HE",
        "Der Hessische Beauftragte für Datenschutz und Informationsfreiheit",
        "Postfach 31 63\n65021 Wiesbaden",
        "poststelle@datenschutz.hessen.de",
        "https://datenschutz.hessen.de",
    ),
    a(
        "MV",
        "Der Landesbeauftragte für Datenschutz und Informationsfreiheit Mecklenburg-Vorpommern",
        "Schloss Schwerin\nLennéstraße 1\n19053 Schwerin",
        "info@datenschutz-mv.de",
        "https://www.datenschutz-mv.de",
    ),
    a(
        "NI",
        "Die Landesbeauftragte für den Datenschutz Niedersachsen",
        "Postfach 2 21\n30002 Hannover",
        "poststelle@lfd.niedersachsen.de",
        "https://www.lfd.niedersachsen.de",
    ),
    a(
        "NW",
        "Landesbeauftragte für Datenschutz und Informationsfreiheit Nordrhein-Westfalen (LDI NRW)",
        "Postfach 20 04 44\n40102 Düsseldorf",
        "poststelle@ldi.nrw.de",
        "https://www.ldi.nrw.de",
    ),
    a(
        "RP",
        "Der Landesbeauftragte für den Datenschutz und die Informationsfreiheit Rheinland-Pfalz",
        "Postfach 30 40\n55020 Mainz",
        "poststelle@datenschutz.rlp.de",
        "https://www.datenschutz.rlp.de",
    ),
    a(
        "SL",
        "Unabhängiges Datenschutzzentrum Saarland",
        "Fritz-Dobisch-Straße 12\n66111 Saarbrücken",
        "poststelle@datenschutz.saarland.de",
        "https://www.datenschutz.saarland.de",
    ),
    a(
        "SN",
        "Die Sächsische Datenschutz- und Transparenzbeauftragte",
        "Postfach 12 00 16\n01001 Dresden",
        "saechsdsb@slt.sachsen.de",
        "https://www.datenschutz.sachsen.de",
    ),
    a(
        "ST",
        "Landesbeauftragter für den Datenschutz Sachsen-Anhalt",
        "Postfach 19 47\n39009 Magdeburg",
        "poststelle@lfd.sachsen-anhalt.de",
        "https://datenschutz.sachsen-anhalt.de",
    ),
    a(
        "SH",
        "Unabhängiges Landeszentrum für Datenschutz Schleswig-Holstein (ULD)",
        "Postfach 71 16\n24171 Kiel",
        "mail@datenschutzzentrum.de",
        "https://www.datenschutzzentrum.de",
    ),
    a(
        "TH",
        "Thüringer Landesbeauftragter für den Datenschutz und die Informationsfreiheit",
        "Postfach 90 04 55\n99107 Erfurt",
        "poststelle@datenschutz.thueringen.de",
        "https://www.tlfdi.de",
    ),
    a(
        "BUND",
        "Die Bundesbeauftragte für den Datenschutz und die Informationsfreiheit (BfDI)",
        "Graurheindorfer Straße 153\n53117 Bonn",
        "poststelle@bfdi.bund.de",
        "https://www.bfdi.bund.de",
    ),
];

/// Looks an authority up by code (case-insensitive; `NRW` for `NW`).
pub fn authority(code: &str) -> Option<&'static Authority> {
    let code = code.trim().to_ascii_uppercase();
    let code = if code == "NRW" {
        "NW".to_string()
    } else {
        code
    };
    AUTHORITIES.iter().find(|a| a.code == code)
}
