//! `--platform`: the VM's SMBIOS identity (what the guest reads in `/sys/class/dmi/id` and
//! `dmidecode`) and the PCI segment count, as Cloud Hypervisor spells them:
//!
//! ```text
//! --platform system_uuid=UUID,system_serial_number=S,oem_strings=[a,b],system_manufacturer=M,
//!            system_product_name=P,system_version=V,system_sku_number=K,system_family=F,
//!            chassis_asset_tag=T,num_pci_segments=N
//! ```
//! `uuid=` and `serial_number=` are the older names of `system_uuid=` and
//! `system_serial_number=` (both still accepted, by Cloud Hypervisor too).

use super::{kv, ConfigError};

const OPT: &str = "platform";

/// Most PCI segments a VM may have (Cloud Hypervisor's limit; Kata asks for 2).
pub use arch::pci_segments::MAX_PCI_SEGMENTS;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlatformConfig {
    /// Declared PCI segments (absent: 1).
    pub num_pci_segments: Option<u16>,
    pub system_manufacturer: Option<String>,
    pub system_product_name: Option<String>,
    pub system_version: Option<String>,
    pub system_serial_number: Option<String>,
    /// As given (checked to be a UUID); the guest reads the same text back.
    pub system_uuid: Option<String>,
    pub system_sku_number: Option<String>,
    pub system_family: Option<String>,
    pub chassis_asset_tag: Option<String>,
    pub oem_strings: Vec<String>,
}

impl PlatformConfig {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let mut cfg = PlatformConfig::default();
        let invalid =
            |param: &'static str, value: &str, reason: String| ConfigError::InvalidValue {
                option: OPT,
                param,
                value: value.into(),
                reason,
            };
        // The older names may not contradict the new ones.
        let set = |slot: &mut Option<String>, param: &'static str, v: &str| {
            if slot.as_deref().is_some_and(|old| old != v) {
                return Err(invalid(
                    param,
                    v,
                    "differs from the value given under the other name".into(),
                ));
            }
            *slot = Some(v.to_string());
            Ok(())
        };
        for (k, v) in kv::parse(
            OPT,
            s,
            &[
                "num_pci_segments",
                "system_manufacturer",
                "system_product_name",
                "system_version",
                "system_serial_number",
                "serial_number",
                "system_uuid",
                "uuid",
                "system_sku_number",
                "system_family",
                "chassis_asset_tag",
                "oem_strings",
            ],
        )? {
            match k {
                "num_pci_segments" => {
                    cfg.num_pci_segments =
                        Some(v.parse().map_err(|_| {
                            invalid(k, v, format!("expected 1 to {MAX_PCI_SEGMENTS}"))
                        })?)
                }
                "system_manufacturer" => set(&mut cfg.system_manufacturer, k, v)?,
                "system_product_name" => set(&mut cfg.system_product_name, k, v)?,
                "system_version" => set(&mut cfg.system_version, k, v)?,
                "system_serial_number" | "serial_number" => {
                    set(&mut cfg.system_serial_number, k, v)?
                }
                "system_uuid" | "uuid" => set(&mut cfg.system_uuid, k, v)?,
                "system_sku_number" => set(&mut cfg.system_sku_number, k, v)?,
                "system_family" => set(&mut cfg.system_family, k, v)?,
                "chassis_asset_tag" => set(&mut cfg.chassis_asset_tag, k, v)?,
                "oem_strings" => cfg.oem_strings = kv::parse_list(v),
                _ => unreachable!("kv::parse accepts only the keys above"),
            }
        }
        cfg.check()
            .map_err(|(param, why)| ConfigError::InvalidValue {
                option: OPT,
                param,
                value: cfg.value_of(param),
                reason: why,
            })?;
        Ok(cfg)
    }

    fn value_of(&self, param: &str) -> String {
        match param {
            "oem_strings" => format!("{:?}", self.oem_strings),
            "num_pci_segments" => format!("{:?}", self.num_pci_segments),
            p => self
                .strings()
                .into_iter()
                .find(|(name, _)| *name == p)
                .and_then(|(_, v)| v.clone())
                .unwrap_or_default(),
        }
    }

    fn strings(&self) -> [(&'static str, &Option<String>); 8] {
        [
            ("system_manufacturer", &self.system_manufacturer),
            ("system_product_name", &self.system_product_name),
            ("system_version", &self.system_version),
            ("system_serial_number", &self.system_serial_number),
            ("system_uuid", &self.system_uuid),
            ("system_sku_number", &self.system_sku_number),
            ("system_family", &self.system_family),
            ("chassis_asset_tag", &self.chassis_asset_tag),
        ]
    }

    /// Whether the guest's tables can say it: (parameter, why) for the first that cannot.
    /// The API reports the same reasons under `platform.<parameter>`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(n) = self.num_pci_segments {
            if n == 0 || n > MAX_PCI_SEGMENTS {
                return Err((
                    "num_pci_segments",
                    format!("expected 1 to {MAX_PCI_SEGMENTS}"),
                ));
            }
        }
        for (name, v) in self.strings() {
            if let Some(v) = v {
                arch::smbios::check_string(name, v).map_err(|e| (name, e.to_string()))?;
            }
        }
        for s in &self.oem_strings {
            arch::smbios::check_string("oem_strings", s)
                .map_err(|e| ("oem_strings", e.to_string()))?;
        }
        if self.oem_strings.len() > 255 {
            return Err(("oem_strings", "at most 255 strings".into()));
        }
        if let Some(u) = &self.system_uuid {
            arch::smbios::parse_uuid(u).map_err(|e| ("system_uuid", e))?;
        }
        Ok(())
    }

    /// The SMBIOS tables' configuration for a VM with `num_vcpus` vCPUs.
    pub fn smbios(&self, num_vcpus: u32) -> arch::smbios::SmbiosConfig {
        arch::smbios::SmbiosConfig {
            manufacturer: self.system_manufacturer.clone(),
            product_name: self.system_product_name.clone(),
            version: self.system_version.clone(),
            serial_number: self.system_serial_number.clone(),
            // Checked when the configuration was made.
            uuid: self
                .system_uuid
                .as_deref()
                .and_then(|u| arch::smbios::parse_uuid(u).ok()),
            sku_number: self.system_sku_number.clone(),
            family: self.system_family.clone(),
            chassis_asset_tag: self.chassis_asset_tag.clone(),
            oem_strings: self.oem_strings.clone(),
            num_vcpus,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_parses_with_cloud_hypervisors_names() {
        let p = PlatformConfig::parse(
            "system_uuid=4b1c0a5e-9f3d-4c2a-8e7b-123456789abc,system_serial_number=SN1,\
             oem_strings=[io.kata=1,\"a,b\"],system_manufacturer=Acme,system_product_name=P,\
             system_version=V,system_sku_number=K,system_family=F,chassis_asset_tag=T,\
             num_pci_segments=2",
        )
        .unwrap();
        assert_eq!(
            p.system_uuid.as_deref(),
            Some("4b1c0a5e-9f3d-4c2a-8e7b-123456789abc")
        );
        assert_eq!(p.system_serial_number.as_deref(), Some("SN1"));
        assert_eq!(p.oem_strings, ["io.kata=1", "a,b"]);
        assert_eq!(p.num_pci_segments, Some(2));
        let s = p.smbios(3);
        assert_eq!(s.manufacturer.as_deref(), Some("Acme"));
        assert_eq!(s.chassis_asset_tag.as_deref(), Some("T"));
        assert_eq!(s.uuid.unwrap()[0], 0x4b);
        assert_eq!(s.num_vcpus, 3);
    }

    #[test]
    fn the_older_names_work_and_may_not_contradict_the_new_ones() {
        let p = PlatformConfig::parse("uuid=4b1c0a5e-9f3d-4c2a-8e7b-123456789abc,serial_number=X")
            .unwrap();
        assert_eq!(p.system_serial_number.as_deref(), Some("X"));
        assert!(p.system_uuid.is_some());
        assert!(PlatformConfig::parse("serial_number=X,system_serial_number=X").is_ok());
        let e = PlatformConfig::parse("serial_number=X,system_serial_number=Y").unwrap_err();
        assert!(e.to_string().contains("other name"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_naming_the_parameter() {
        for (s, param) in [
            ("system_uuid=nope", "system_uuid"),
            ("num_pci_segments=0", "num_pci_segments"),
            ("num_pci_segments=17", "num_pci_segments"),
            ("num_pci_segments=x", "num_pci_segments"),
            ("system_family=", "system_family"),
            ("oem_strings=[a,]", "oem_strings"),
        ] {
            let e = PlatformConfig::parse(s).unwrap_err();
            assert!(
                matches!(&e, ConfigError::InvalidValue { param: p, .. } if *p == param),
                "{s}: {e}"
            );
        }
        assert!(matches!(
            PlatformConfig::parse("tdx=on"),
            Err(ConfigError::UnknownParam { .. })
        ));
    }
}
